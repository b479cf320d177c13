/* qc_ctq.c - compressed-tensors quantized Linears: tensors, checks,
 * dequantization (see qc_ctq.h). */
#include "qc_ctq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_quant.h"

/* ---------------------------------------------------------------- the config */

int qc_ctq_from_config(qc_ctq **out, const json_t *config)
{
	*out = NULL;
	const json_t *qcfg = json_object_get(config, "quantization_config");
	if (!qcfg || json_is_null(qcfg))
		return 0;
	qc_ctq *q = calloc(1, sizeof *q);
	if (!q)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = qc_qscheme_from_json(&q->scheme, qcfg);
	if (rc)
		goto fail;
	const char *f = q->scheme.format;
	if (strcmp(f, "naive-quantized") == 0 || strcmp(f, "int-quantized") == 0 ||
	    strcmp(f, "float-quantized") == 0) {
		q->format = QC_CTQ_NAIVE;
	} else if (strcmp(f, "pack-quantized") == 0) {
		q->format = QC_CTQ_PACKED;
		if (q->scheme.weights.is_float) {
			rc = qc_seterr(QC_EFORMAT, "quantization_config: pack-quantized format with float weights");
			goto fail;
		}
	} else {
		rc = qc_seterr(QC_EUNSUPPORTED, "quantization_config: format '%s' is not supported", f);
		goto fail;
	}
	/* surface unsupported activation schemes now, not at the first layer */
	qk_actq a;
	if ((rc = qc_ctq_actq(q, 1.0f, 0, &a)))
		goto fail;
	*out = q;
	return 0;
fail:
	qc_ctq_free(q);
	return rc;
}

void qc_ctq_free(qc_ctq *q)
{
	if (!q)
		return;
	qc_qscheme_free(&q->scheme);
	free(q);
}

int qc_ctq_quantized(const qc_ctq *q, const char *module)
{
	if (!q)
		return 0;
	int r = qc_qscheme_ignored(&q->scheme, module);
	if (r < 0)
		return r;
	return !r;
}

int qc_ctq_actq(const qc_ctq *q, float static_scale, int32_t static_zp, qk_actq *out)
{
	*out = (qk_actq){ QK_ACTQ_NONE, 0, 0 };
	if (!q)
		return 0;
	const qc_qscheme *s = &q->scheme;
	switch (s->act) {
	case QC_ACT_NONE:
		return 0;
	case QC_ACT_DYNAMIC_TOKEN:
		if (!s->act_is_float && !s->act_symmetric)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: asymmetric dynamic int8 "
			                 "input activations are not supported");
		out->kind = s->act_is_float ? QK_ACTQ_FP8_TOKEN : QK_ACTQ_INT8_TOKEN;
		return 0;
	case QC_ACT_STATIC_TENSOR:
		if (s->act_is_float && !s->act_symmetric)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: asymmetric fp8 input "
			                 "activations are not supported");
		out->kind = s->act_is_float ? QK_ACTQ_FP8_TENSOR : QK_ACTQ_INT8_TENSOR;
		out->scale = static_scale;
		out->zero_point = s->act_is_float || s->act_symmetric ? 0 : static_zp;
		return 0;
	case QC_ACT_DYNAMIC_TENSOR:
		break;
	}
	return qc_seterr(QC_EUNSUPPORTED, "quantization_config: dynamic per-tensor input "
	                 "activations are not supported");
}

/* ---------------------------------------------------------------- tensor checks */

static int check_dtype(const qc_tensor *t, const char *name, int ok, const char *want)
{
	if (!ok)
		return qc_seterr(QC_EFORMAT, "tensor '%s' has dtype %s, expected %s", name,
		                 qc_dtype_name(t->dtype), want);
	return 0;
}

/* shape equal to want[0..nd), or to one of the accepted alternatives the
 * caller passes as a second try */
static int same_shape(const qc_tensor *t, int nd, const int64_t *want)
{
	if (t->ndim != nd)
		return 0;
	for (int i = 0; i < nd; i++)
		if (t->shape[i] != want[i])
			return 0;
	return 1;
}

static int shape_err(const qc_tensor *t, const char *name, int nd, const int64_t *want)
{
	char a[128], b[128];
	return qc_seterr(QC_EFORMAT, "tensor '%s' has shape %s, expected %s", name,
	                 qc_shape_str(a, sizeof a, t->ndim, t->shape), qc_shape_str(b, sizeof b, nd, want));
}

static int is_float_dt(qc_dtype d)
{
	return d == QC_DT_F32 || d == QC_DT_F16 || d == QC_DT_BF16 || d == QC_DT_F64;
}

/* the suffixes a Linear's tensors live under, in qc_ctq_linear field order */
enum { T_WEIGHT, T_SCALE, T_ZP, T_SHAPE, T_ISCALE, T_IZP, T_COUNT };

static const qc_tensor **slot(qc_ctq_linear *L, int i)
{
	switch (i) {
	case T_WEIGHT: return &L->weight;
	case T_SCALE: return &L->scale;
	case T_ZP: return &L->zero_point;
	case T_SHAPE: return &L->shape;
	case T_ISCALE: return &L->input_scale;
	default: return &L->input_zp;
	}
}

static const char *suffix(const qc_ctq_linear *L, int i)
{
	switch (i) {
	case T_WEIGHT: return L->quantized && L->format == QC_CTQ_PACKED ? "weight_packed" : "weight";
	case T_SCALE: return "weight_scale";
	case T_ZP: return "weight_zero_point";
	case T_SHAPE: return "weight_shape";
	case T_ISCALE: return "input_scale";
	default: return "input_zero_point";
	}
}

static int fetch(qc_ctq_linear *L, int i, char *name, size_t n)
{
	snprintf(name, n, "%s.%s", L->module, suffix(L, i));
	int rc = L->src->get(L->src->ctx, name, slot(L, i));
	if (rc) {
		*slot(L, i) = NULL;
		if (rc == QC_ENOTFOUND)
			return qc_seterr(QC_ENOTFOUND, "tensor '%s' is missing", name);
	}
	return rc;
}

void qc_ctq_linear_release(qc_ctq_linear *L)
{
	if (!L->src)
		return;
	char name[256];
	for (int i = 0; i < T_COUNT; i++)
		if (*slot(L, i)) {
			snprintf(name, sizeof name, "%s.%s", L->module, suffix(L, i));
			*slot(L, i) = NULL;
			if (L->src->release)
				L->src->release(L->src->ctx, name);
		}
}

static float scalar_f32(const qc_tensor *t)
{
	float v = NAN;
	if (is_float_dt(t->dtype))
		qc_to_f32(&v, t->data, t->dtype, 1);
	else if (t->dtype == QC_DT_I8)
		v = (float)*(const int8_t *)t->data;
	else if (t->dtype == QC_DT_I32) {
		int32_t i;
		memcpy(&i, t->data, 4);
		v = (float)i;
	}
	return v;
}

/* [1] or a scalar: what compressed-tensors and older writers use for
 * per-tensor parameters */
static int is_single(const qc_tensor *t)
{
	return (t->ndim == 0) || (t->ndim == 1 && t->shape[0] == 1);
}

int qc_ctq_linear_get(qc_ctq_linear *L, const qc_ctq *q, const qc_wsrc *src, const char *module,
                      int64_t out, int64_t in)
{
	memset(L, 0, sizeof *L);
	if (strlen(module) >= sizeof L->module)
		return qc_seterr(QC_EINVAL, "module name '%s' too long", module);
	snprintf(L->module, sizeof L->module, "%s", module);
	L->src = src;
	L->out = out;
	L->in = in;
	int rc = qc_ctq_quantized(q, module);
	if (rc < 0)
		return rc;
	L->quantized = rc;
	char name[256];
	int64_t wshape[2] = { out, in };
	if (!L->quantized) {
		QC_TRY(fetch(L, T_WEIGHT, name, sizeof name));
		if (!is_float_dt(L->weight->dtype)) {
			if (L->weight->dtype == QC_DT_I8 || L->weight->dtype == QC_DT_F8_E4M3)
				return qc_seterr(QC_EFORMAT, "tensor '%s' holds %s codes but quantization_config "
				                 "does not quantize '%s'", name, qc_dtype_name(L->weight->dtype), module);
			return check_dtype(L->weight, name, 0, "F32, F16 or BF16");
		}
		if (!same_shape(L->weight, 2, wshape))
			return shape_err(L->weight, name, 2, wshape);
		return 0;
	}
	L->format = q->format;
	L->args = q->scheme.weights;
	const qc_qargs *a = &L->args;
	int64_t ng = qc_qgroups(a, in);
	/* weights: codes or packed words */
	QC_TRY(fetch(L, T_WEIGHT, name, sizeof name));
	if (L->format == QC_CTQ_NAIVE) {
		qc_dtype want = a->is_float ? QC_DT_F8_E4M3 : QC_DT_I8;
		QC_TRY(check_dtype(L->weight, name, L->weight->dtype == want, qc_dtype_name(want)));
		if (!same_shape(L->weight, 2, wshape))
			return shape_err(L->weight, name, 2, wshape);
	} else {
		int pf = 32 / a->bits;
		int64_t ps[2] = { out, (in + pf - 1) / pf };
		QC_TRY(check_dtype(L->weight, name, L->weight->dtype == QC_DT_I32, "I32"));
		if (!same_shape(L->weight, 2, ps))
			return shape_err(L->weight, name, 2, ps);
		QC_TRY(fetch(L, T_SHAPE, name, sizeof name));
		const qc_tensor *s = L->shape;
		int64_t one = 2;
		if (!same_shape(s, 1, &one))
			return shape_err(s, name, 1, &one);
		int64_t d[2];
		if (s->dtype == QC_DT_I64) {
			memcpy(d, s->data, 16);
		} else if (s->dtype == QC_DT_I32) {
			int32_t d32[2];
			memcpy(d32, s->data, 8);
			d[0] = d32[0];
			d[1] = d32[1];
		} else {
			return check_dtype(s, name, 0, "I64");
		}
		if (d[0] != out || d[1] != in)
			return qc_seterr(QC_EFORMAT, "tensor '%s' says [%lld, %lld], config.json implies "
			                 "[%lld, %lld]", name, (long long)d[0], (long long)d[1],
			                 (long long)out, (long long)in);
	}
	/* scales */
	QC_TRY(fetch(L, T_SCALE, name, sizeof name));
	QC_TRY(check_dtype(L->scale, name, is_float_dt(L->scale->dtype), "BF16, F16 or F32"));
	int64_t ss[2] = { a->strategy == QC_QS_TENSOR ? 1 : out, ng };
	int ok;
	if (a->strategy == QC_QS_TENSOR)
		ok = is_single(L->scale);
	else if (a->strategy == QC_QS_CHANNEL)
		ok = same_shape(L->scale, 2, ss) || same_shape(L->scale, 1, ss);
	else
		ok = same_shape(L->scale, 2, ss);
	if (!ok)
		return shape_err(L->scale, name, a->strategy == QC_QS_TENSOR ? 1 : 2, ss);
	/* zero points (asymmetric int only) */
	if (!a->symmetric && !a->is_float) {
		QC_TRY(fetch(L, T_ZP, name, sizeof name));
		if (L->format == QC_CTQ_NAIVE) {
			QC_TRY(check_dtype(L->zero_point, name, L->zero_point->dtype == QC_DT_I8, "I8"));
			if (a->strategy == QC_QS_TENSOR ? !is_single(L->zero_point)
			                                : !(same_shape(L->zero_point, 2, ss) ||
			                                    (a->strategy == QC_QS_CHANNEL &&
			                                     same_shape(L->zero_point, 1, ss))))
				return shape_err(L->zero_point, name, 2, ss);
		} else {
			int pf = 32 / a->bits;
			int64_t zs[2] = { (out + pf - 1) / pf, ng };
			QC_TRY(check_dtype(L->zero_point, name, L->zero_point->dtype == QC_DT_I32, "I32"));
			if (a->strategy == QC_QS_TENSOR || !same_shape(L->zero_point, 2, zs))
				return shape_err(L->zero_point, name, 2, zs);
		}
	}
	/* input activations */
	const qc_qscheme *s = &q->scheme;
	float iscale = 0;
	int32_t izp = 0;
	if (s->act == QC_ACT_STATIC_TENSOR) {
		QC_TRY(fetch(L, T_ISCALE, name, sizeof name));
		QC_TRY(check_dtype(L->input_scale, name, is_float_dt(L->input_scale->dtype),
		                   "BF16, F16 or F32"));
		if (!is_single(L->input_scale)) {
			int64_t one = 1;
			return shape_err(L->input_scale, name, 1, &one);
		}
		iscale = scalar_f32(L->input_scale);
		if (!s->act_is_float && !s->act_symmetric) {
			QC_TRY(fetch(L, T_IZP, name, sizeof name));
			QC_TRY(check_dtype(L->input_zp, name, L->input_zp->dtype == QC_DT_I8 ||
			                   L->input_zp->dtype == QC_DT_I32, "I8"));
			if (!is_single(L->input_zp)) {
				int64_t one = 1;
				return shape_err(L->input_zp, name, 1, &one);
			}
			izp = (int32_t)scalar_f32(L->input_zp);
		}
	}
	return qc_ctq_actq(q, iscale, izp, &L->act);
}

/* ---------------------------------------------------------------- dequantization */

static int32_t word_at(const qc_tensor *t, int64_t i)
{
	int32_t w;
	memcpy(&w, (const char *)t->data + i * 4, 4);
	return w;
}

/* zero point of (row r, group g) of a pack-quantized Linear */
static float packed_zp(const qc_ctq_linear *L, int64_t r, int64_t g, int64_t ng)
{
	int b = L->args.bits, pf = 32 / b;
	uint32_t w = (uint32_t)word_at(L->zero_point, (r / pf) * ng + g);
	uint32_t u = (w >> (b * (r % pf))) & ((1u << b) - 1);
	return (float)((int)u - (1 << (b - 1)));
}

int qc_ctq_linear_rows(qk_ctx *kc, const qc_ctq_linear *L, int64_t r0, int64_t r1, float *w)
{
	if (r0 < 0 || r1 > L->out || r0 > r1)
		return qc_seterr(QC_EINVAL, "rows [%lld, %lld) outside '%s'", (long long)r0,
		                 (long long)r1, L->module);
	int64_t rows = r1 - r0, in = L->in;
	if (rows == 0)
		return 0;
	if (!L->quantized) {
		size_t es = qc_dtype_size(L->weight->dtype);
		return qk_to_f32(kc, w, (const char *)L->weight->data + (size_t)(r0 * in) * es,
		                 L->weight->dtype, (size_t)(rows * in));
	}
	const qc_qargs *a = &L->args;
	int64_t ng = qc_qgroups(a, in);
	int tensor = a->strategy == QC_QS_TENSOR;
	int64_t srows = tensor ? 1 : rows, s0 = tensor ? 0 : r0;
	int64_t group = a->strategy == QC_QS_GROUP ? a->group_size : in;
	int rc = 0;
	float *sc = malloc((size_t)(srows * ng) * sizeof *sc);
	float *zp = NULL;
	int8_t *codes = NULL;
	if (!sc) {
		rc = qc_seterr(QC_ENOMEM, "out of memory dequantizing '%s'", L->module);
		goto out;
	}
	size_t ses = qc_dtype_size(L->scale->dtype);
	if ((rc = qc_to_f32(sc, (const char *)L->scale->data + (size_t)(s0 * ng) * ses,
	                    L->scale->dtype, (size_t)(srows * ng))))
		goto out;
	if (L->zero_point) {
		if (!(zp = malloc((size_t)(srows * ng) * sizeof *zp))) {
			rc = qc_seterr(QC_ENOMEM, "out of memory dequantizing '%s'", L->module);
			goto out;
		}
		for (int64_t r = 0; r < srows; r++)
			for (int64_t g = 0; g < ng; g++)
				zp[r * ng + g] = L->format == QC_CTQ_NAIVE
				                         ? (float)((const int8_t *)L->zero_point->data)[(s0 + r) * ng + g]
				                         : packed_zp(L, s0 + r, g, ng);
	}
	const void *cp = (const char *)L->weight->data + (size_t)(r0 * in);
	if (L->format == QC_CTQ_PACKED) {
		/* unpack rows to one signed code per byte */
		int b = a->bits, pf = 32 / b;
		int64_t nw = (in + pf - 1) / pf;
		if (!(codes = malloc((size_t)(rows * in)))) {
			rc = qc_seterr(QC_ENOMEM, "out of memory dequantizing '%s'", L->module);
			goto out;
		}
		for (int64_t r = 0; r < rows; r++)
			for (int64_t c = 0; c < in; c++) {
				uint32_t wd = (uint32_t)word_at(L->weight, (r0 + r) * nw + c / pf);
				uint32_t u = (wd >> (b * (c % pf))) & ((1u << b) - 1);
				codes[r * in + c] = (int8_t)((int)u - (1 << (b - 1)));
			}
		cp = codes;
	}
	rc = qk_dequant(kc, w, cp, L->format == QC_CTQ_NAIVE ? L->weight->dtype : QC_DT_I8, rows, in,
	                sc, zp, tensor ? 0 : ng, group);
out:
	free(sc);
	free(zp);
	free(codes);
	return rc;
}

/* ---------------------------------------------------------------- value checks */

static int bad(const char *module, const char *suf, int64_t i, const char *what)
{
	return qc_seterr(QC_EINTEGRITY, "tensor '%s.%s' %s at index %lld", module, suf, what,
	                 (long long)i);
}

static int check_floats_positive(const qc_tensor *t, const char *module, const char *suf)
{
	int64_t n = qc_numel(t->ndim, t->shape);
	size_t es = qc_dtype_size(t->dtype);
	for (int64_t i = 0; i < n; i++) {
		float v;
		qc_to_f32(&v, (const char *)t->data + (size_t)i * es, t->dtype, 1);
		if (!isfinite(v))
			return bad(module, suf, i, "holds a non-finite scale");
		if (!(v > 0))
			return bad(module, suf, i, "holds a scale that is not positive");
	}
	return 0;
}

int qc_ctq_linear_check(const qc_ctq_linear *L)
{
	const qc_tensor *w = L->weight;
	int64_t n = qc_numel(w->ndim, w->shape);
	if (!L->quantized) {
		int64_t i = qc_first_nonfinite(w->data, w->dtype, (size_t)n);
		if (i >= 0)
			return bad(L->module, "weight", i, "holds a non-finite value");
		return 0;
	}
	const qc_qargs *a = &L->args;
	QC_TRY(check_floats_positive(L->scale, L->module, "weight_scale"));
	int qmin = -(1 << (a->bits - 1)), qmax = (1 << (a->bits - 1)) - 1;
	if (L->format == QC_CTQ_NAIVE) {
		const uint8_t *c = w->data;
		for (int64_t i = 0; i < n; i++) {
			if (a->is_float) {
				if ((c[i] & 0x7f) == 0x7f)
					return bad(L->module, "weight", i, "holds a NaN code");
			} else if ((int8_t)c[i] < qmin || (int8_t)c[i] > qmax) {
				char what[64];
				snprintf(what, sizeof what, "holds code %d outside [%d, %d]", (int8_t)c[i], qmin, qmax);
				return bad(L->module, "weight", i, what);
			}
		}
		if (L->zero_point) {
			int64_t nz = qc_numel(L->zero_point->ndim, L->zero_point->shape);
			const int8_t *z = L->zero_point->data;
			for (int64_t i = 0; i < nz; i++)
				if (z[i] < qmin || z[i] > qmax)
					return bad(L->module, "weight_zero_point", i, "holds a zero point outside the code range");
		}
	}
	/* packed codes and zero points are in range by construction (b-bit
	 * fields); padding bits are not checked, writers differ in what they
	 * pad with */
	if (L->input_scale)
		QC_TRY(check_floats_positive(L->input_scale, L->module, "input_scale"));
	if (L->input_zp) {
		float z = scalar_f32(L->input_zp);
		if (!(z >= -128 && z <= 127))
			return bad(L->module, "input_zero_point", 0, "holds a zero point outside int8");
	}
	return 0;
}
