/* qc_packfmt.c - packed layouts of quantized Linears: specs, config blocks,
 * bit layouts, one Linear packed and unpacked (see qc_packfmt.h). */
#include "qc_packfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_pool.h"

// ---------------------------------------------------------------- formats

static const char *const format_names[] = { "compressed-tensors", "gptq", "awq" };

int qc_pack_format_parse(const char *name, qc_pack_format *f)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, format_names[i]) == 0) {
			*f = (qc_pack_format)i;
			return 0;
		}
	return qc_seterr(QC_EINVAL, "unknown format '%s' (compressed-tensors, gptq, awq)", name);
}

const char *qc_pack_format_name(qc_pack_format f)
{
	return (unsigned)f < 3 ? format_names[f] : "?";
}

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

/* values per 32-bit word for b-bit fields */
static int per_word(int bits)
{
	return 32 / bits;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
	return (a + b - 1) / b;
}

// ---------------------------------------------------------------- specs

int qc_pack_spec_for(qc_pack_spec *spec, qc_pack_format f, const qc_qscheme *s)
{
	memset(spec, 0, sizeof *spec);
	spec->format = f;
	spec->w = s->weights;
	const qc_qargs *w = &s->weights;
	const char *fn = qc_pack_format_name(f);
	QC_TRY(qc_qargs_check(w));
	if (f == QC_PACK_CT) {
		/* compressed-tensors' choice (config/format.py): weight-only int4/int8
		 * packs; activation schemes keep one code per byte */
		if (s->act == QC_ACT_NONE) {
			if (!w->is_float) {
				if (!w->symmetric && w->strategy == QC_QS_TENSOR)
					return qc_seterr(QC_EUNSUPPORTED, "cannot write asymmetric per-tensor int "
					                 "weights as pack-quantized: its zero points are packed per "
					                 "output channel");
				spec->ct_packed = 1;
				snprintf(spec->ct_format, sizeof spec->ct_format, "pack-quantized");
			} else {
				snprintf(spec->ct_format, sizeof spec->ct_format, "naive-quantized");
			}
		} else {
			snprintf(spec->ct_format, sizeof spec->ct_format, "%s",
			         w->is_float ? "float-quantized" : "int-quantized");
		}
		return 0;
	}
	if (w->is_float)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write fp8 weights as %s: it stores integer "
		                 "codes (use -f compressed-tensors, float-quantized)", fn);
	if (s->act != QC_ACT_NONE)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write a scheme with quantized input "
		                 "activations as %s: its checkpoints are weight-only (use -f "
		                 "compressed-tensors, int-quantized)", fn);
	if (s->kv_cache_fp8)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write an fp8 KV-cache scheme as %s: it has no "
		                 "k_scale/v_scale (use -f compressed-tensors)", fn);
	int lm = qc_qscheme_ignored(s, "lm_head");
	if (lm < 0)
		return lm;
	if (!lm)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write a quantized lm_head as %s: its loaders "
		                 "quantize the decoder layers only (use -f compressed-tensors)", fn);
	if (w->strategy == QC_QS_TENSOR)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write per-tensor weight scales as %s: it has "
		                 "per-group and per-channel scales only (use -f compressed-tensors)", fn);
	if (f == QC_PACK_GPTQ) {
		spec->gptq_v2 = !w->symmetric;
		return 0;
	}
	if (w->bits != 4)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write %d-bit weights as awq: AutoAWQ's GEMM "
		                 "layout is 4-bit only (use -f gptq or -f compressed-tensors)", w->bits);
	if (w->strategy != QC_QS_GROUP)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write per-channel scales as awq: its loaders "
		                 "need a group size (use -f gptq or -f compressed-tensors)");
	return 0;
}

int qc_pack_check_linear(const qc_pack_spec *spec, const char *module, int64_t out, int64_t in)
{
	const qc_qargs *w = &spec->w;
	int64_t group = w->strategy == QC_QS_GROUP ? w->group_size : in;
	switch (spec->format) {
	case QC_PACK_CT:
		return 0;   /* rows and zero points are padded: every shape packs */
	case QC_PACK_GPTQ:
		if (in % 32 || out % 32)
			return qc_seterr(QC_EUNSUPPORTED, "cannot write '%s' [%lld, %lld] as gptq: AutoGPTQ "
			                 "needs in and out features divisible by 32", module, (long long)out,
			                 (long long)in);
		break;
	case QC_PACK_AWQ:
		if (out % 8)
			return qc_seterr(QC_EUNSUPPORTED, "cannot write '%s' [%lld, %lld] as awq: AutoAWQ "
			                 "needs out features divisible by 8", module, (long long)out, (long long)in);
		break;
	}
	if (in % group)
		return qc_seterr(QC_EUNSUPPORTED, "cannot write '%s' [%lld, %lld] as %s: its last group "
		                 "of %lld columns is partial, and the %s layout needs in features "
		                 "divisible by the group size %lld", module, (long long)out, (long long)in,
		                 qc_pack_format_name(spec->format), (long long)(in % group),
		                 qc_pack_format_name(spec->format), (long long)group);
	return 0;
}

// ---------------------------------------------------------------- config.json

/* json_object_set_new that reports failure (it frees v either way) */
static int put(json_t *o, const char *k, json_t *v)
{
	return json_object_set_new(o, k, v) ? nomem() : 0;
}

int qc_pack_qconfig(const qc_pack_spec *spec, const qc_qscheme *s, const char *const *ignored,
                    size_t n_ignored, json_t **out)
{
	*out = NULL;
	const qc_qargs *w = &spec->w;
	if (spec->format == QC_PACK_CT) {
		qc_qscheme c = *s;
		snprintf(c.format, sizeof c.format, "%s", spec->ct_format);
		return qc_qscheme_to_json(&c, out);
	}
	json_t *q = json_object();
	if (!q)
		return nomem();
	int64_t group = w->strategy == QC_QS_GROUP ? w->group_size : -1;
	int rc = put(q, "bits", json_integer(w->bits));
	if (!rc)
		rc = put(q, "group_size", json_integer(group));
	if (!rc)
		rc = put(q, "quant_method", json_string(qc_pack_format_name(spec->format)));
	if (!rc && spec->format == QC_PACK_GPTQ) {
		/* AutoGPTQ BaseQuantizeConfig.to_dict, doc/formats.md 2.3 */
		rc = put(q, "checkpoint_format", json_string(spec->gptq_v2 ? "gptq_v2" : "gptq"));
		if (!rc)
			rc = put(q, "damp_percent", json_real(0.01));
		if (!rc)
			rc = put(q, "desc_act", json_false());
		if (!rc)
			rc = put(q, "model_file_base_name", json_string("model"));
		if (!rc)
			rc = put(q, "model_name_or_path", json_null());
		if (!rc)
			rc = put(q, "static_groups", json_false());
		if (!rc)
			rc = put(q, "sym", json_boolean(w->symmetric));
		if (!rc)
			rc = put(q, "true_sequential", json_true());
	} else if (!rc) {
		/* AutoAWQ AwqConfig.to_transformers_dict, doc/formats.md 3.2 */
		json_t *mods = json_null();
		if (n_ignored) {
			mods = json_array();
			for (size_t i = 0; mods && i < n_ignored; i++)
				if (json_array_append_new(mods, json_string(ignored[i]))) {
					json_decref(mods);
					mods = NULL;
				}
		}
		rc = mods ? put(q, "modules_to_not_convert", mods) : nomem();
		if (!rc)
			rc = put(q, "version", json_string("gemm"));
		if (!rc)
			rc = put(q, "zero_point", json_true());
	}
	if (rc) {
		json_decref(q);
		return rc;
	}
	*out = q;
	return 0;
}

static int get_int(const json_t *qc, const char *k, const char *alt, int64_t *v, int required)
{
	const json_t *j = json_object_get(qc, k);
	if (!j && alt)
		j = json_object_get(qc, alt);
	if (!j || json_is_null(j)) {
		if (required)
			return qc_seterr(QC_EFORMAT, "quantization_config has no '%s'", k);
		return 1;
	}
	if (!json_is_integer(j))
		return qc_seterr(QC_EFORMAT, "quantization_config: '%s' is not an integer", k);
	*v = json_integer_value(j);
	return 0;
}

static int get_flag(const json_t *qc, const char *k, int dflt, int *v)
{
	const json_t *j = json_object_get(qc, k);
	if (!j || json_is_null(j)) {
		*v = dflt;
		return 0;
	}
	if (!json_is_boolean(j))
		return qc_seterr(QC_EFORMAT, "quantization_config: '%s' is not a boolean", k);
	*v = json_is_true(j);
	return 0;
}

/* "re:.*" + s with every regex metacharacter escaped: a substring match */
static char *substring_regex(const char *s)
{
	size_t n = strlen(s);
	char *r = malloc(2 * n + 8);
	if (!r)
		return NULL;
	char *p = r + sprintf(r, "re:.*");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c >= 0x80))
			*p++ = '\\';
		*p++ = (char)c;
	}
	*p = 0;
	return r;
}

int qc_pack_detect(const json_t *config, qc_pack_spec *spec, json_t **naive_qc)
{
	if (naive_qc)
		*naive_qc = NULL;
	memset(spec, 0, sizeof *spec);
	const json_t *qc = json_object_get(config, "quantization_config");
	if (!qc || json_is_null(qc))
		return 0;
	if (!json_is_object(qc))
		return qc_seterr(QC_EFORMAT, "quantization_config is not an object");
	const json_t *qm = json_object_get(qc, "quant_method");
	const char *m = json_is_string(qm) ? json_string_value(qm) : "";
	qc_qscheme s;
	int rc;
	if (strcmp(m, "compressed-tensors") == 0) {
		if ((rc = qc_qscheme_from_json(&s, qc)))
			return rc;
		spec->format = QC_PACK_CT;
		spec->w = s.weights;
		snprintf(spec->ct_format, sizeof spec->ct_format, "%s", s.format);
		spec->ct_packed = strcmp(s.format, "pack-quantized") == 0;
		qc_qscheme_free(&s);
		return 1;
	}
	int gptq = strcmp(m, "gptq") == 0;
	if (!gptq && strcmp(m, "awq") != 0)
		return qc_seterr(QC_EUNSUPPORTED, "quantization method '%s' is not supported "
		                 "(compressed-tensors, gptq, awq)", *m ? m : "?");
	int64_t bits = 0, group = 0;
	if ((rc = get_int(qc, "bits", gptq ? NULL : "w_bit", &bits, 1)) ||
	    (rc = get_int(qc, "group_size", gptq ? NULL : "q_group_size", &group, 1)))
		return rc;
	if (gptq ? (bits != 4 && bits != 8) : bits != 4)
		return qc_seterr(QC_EUNSUPPORTED, "quantization_config: %lld-bit %s is not supported "
		                 "(%s)", (long long)bits, m, gptq ? "4, 8" : "4");
	if (group == 0 || group < -1 || (!gptq && group < 1))
		return qc_seterr(QC_EFORMAT, "quantization_config: group_size %lld is not valid",
		                 (long long)group);
	qc_qargs *w = &spec->w;
	w->bits = (int)bits;
	w->strategy = group == -1 ? QC_QS_CHANNEL : QC_QS_GROUP;
	w->group_size = group == -1 ? 0 : group;
	w->scale_dtype = QC_DT_F16;
	w->arith = QC_DT_F32;
	const json_t *ignore = NULL;
	if (gptq) {
		spec->format = QC_PACK_GPTQ;
		int desc = 0, sym = 1, lm = 0;
		if ((rc = get_flag(qc, "desc_act", 0, &desc)) || (rc = get_flag(qc, "sym", 1, &sym)) ||
		    (rc = get_flag(qc, "lm_head", 0, &lm)))
			return rc;
		if (desc)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: act-order GPTQ (desc_act "
			                 "true) is not supported: its g_idx has no naive form");
		if (lm)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: a quantized lm_head is not "
			                 "supported for gptq");
		const json_t *dyn = json_object_get(qc, "dynamic");
		if (dyn && !json_is_null(dyn) && !(json_is_object(dyn) && json_object_size(dyn) == 0))
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: per-module 'dynamic' GPTQ "
			                 "overrides are not supported");
		w->symmetric = sym;
		const json_t *cf = json_object_get(qc, "checkpoint_format");
		const char *cfs = json_is_string(cf) ? json_string_value(cf) : "gptq";
		if (cf && !json_is_null(cf) && !json_is_string(cf))
			return qc_seterr(QC_EFORMAT, "quantization_config: 'checkpoint_format' is not a string");
		if (strcmp(cfs, "gptq_v2") == 0)
			spec->gptq_v2 = 1;
		else if (strcmp(cfs, "gptq") != 0)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: checkpoint_format '%s' is "
			                 "not supported (gptq, gptq_v2)", cfs);
	} else {
		spec->format = QC_PACK_AWQ;
		int zp = 1;
		if ((rc = get_flag(qc, "zero_point", 1, &zp)))
			return rc;
		if (!zp)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: awq without zero points is "
			                 "not supported");
		const json_t *v = json_object_get(qc, "version");
		if (v && !json_is_null(v) &&
		    (!json_is_string(v) || strcasecmp(json_string_value(v), "gemm") != 0))
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: awq version '%s' is not "
			                 "supported (gemm)", json_is_string(v) ? json_string_value(v) : "?");
		/* AWQ always stores zero points: the naive equivalent is asymmetric
		 * (a symmetric scheme written with z = 8 reads back as zp 0) */
		w->symmetric = 0;
		ignore = json_object_get(qc, "modules_to_not_convert");
		if (ignore && !json_is_null(ignore) && !json_is_array(ignore))
			return qc_seterr(QC_EFORMAT, "quantization_config: 'modules_to_not_convert' is "
			                 "not a list");
	}
	if (!naive_qc)
		return 1;
	/* the equivalent naive-quantized scheme */
	if ((rc = qc_qscheme_preset(&s, "w4a16")))
		return rc;
	s.weights = *w;
	if (!rc) {
		size_t i;
		const json_t *e;
		json_array_foreach(ignore, i, e) {
			if (!json_is_string(e)) {
				rc = qc_seterr(QC_EFORMAT, "quantization_config: 'modules_to_not_convert' holds "
				               "a non-string");
				break;
			}
			char *re = substring_regex(json_string_value(e));
			rc = re ? qc_qscheme_add_ignore(&s, re) : nomem();
			free(re);
			if (rc)
				break;
		}
	}
	if (!rc)
		rc = qc_qscheme_to_json(&s, naive_qc);
	qc_qscheme_free(&s);
	return rc ? rc : 1;
}

// ---------------------------------------------------------------- threads

/* Run fn over [0, n) split into `threads` contiguous ranges whose bounds
 * are multiples of `align` (the blocking of the caller's loops), the first
 * range on the calling thread. Every range does the same work as one call
 * over all of them would: results never depend on the thread count. */
typedef int (*range_fn)(void *ctx, int64_t i0, int64_t i1);

typedef struct {
	range_fn fn;
	void *ctx;
	int64_t n, align, blocks;
} range_job;

/* part t: blocks [blocks t / parts, blocks (t + 1) / parts), in items */
static int range_part(void *p, int part, int nparts)
{
	const range_job *j = p;
	int64_t b0, b1;
	qc_pool_range(j->blocks, part, nparts, &b0, &b1);
	return j->fn(j->ctx, b0 * j->align, b1 * j->align < j->n ? b1 * j->align : j->n);
}

static int parallel(int threads, int64_t n, int64_t align, range_fn fn, void *ctx)
{
	enum { MAXT = 16 };
	if (threads > MAXT)
		threads = MAXT;
	int64_t blocks = ceil_div(n, align);
	if (threads <= 1 || blocks < 2)
		return fn(ctx, 0, n);
	if (threads > blocks)
		threads = (int)blocks;
	range_job j = { fn, ctx, n, align, blocks };
	return qc_pool_run(threads, range_part, &j);
}

// ---------------------------------------------------------------- bit layouts

/* A code outside [-2^(b-1), 2^(b-1)-1] cannot be packed: find the first one
 * for the message (only on the failure path). */
static int code_range_err(const int8_t *codes, int64_t i0, int64_t n, int bits)
{
	int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
	for (int64_t i = i0; i < i0 + n; i++)
		if (codes[i] < lo || codes[i] > hi)
			return qc_seterr(QC_EFORMAT, "code %d at index %lld is outside the %d-bit range "
			                 "[%d, %d]", codes[i], (long long)i, bits, lo, hi);
	return qc_seterr(QC_EINTERNAL, "code range check failed without a bad code");
}

/* unsigned field of a code; "bad" collects bits above the field */
#define UFIELD(q, bits) ((uint32_t)(uint8_t)((q) + (1 << ((bits) - 1))))

int qc_pack_ct_rows_ref(const int8_t *codes, int64_t rows, int64_t cols, int bits, uint32_t *words)
{
	int pf = per_word(bits);
	int64_t nw = ceil_div(cols, pf);
	int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
	for (int64_t r = 0; r < rows; r++)
		for (int64_t w = 0; w < nw; w++) {
			uint32_t word = 0;
			for (int k = 0; k < pf; k++) {
				int64_t c = w * pf + k;
				if (c >= cols)
					break;      /* padding: u = 0 */
				int q = codes[r * cols + c];
				if (q < lo || q > hi)
					return code_range_err(codes, 0, rows * cols, bits);
				word |= (uint32_t)(q - lo) << (bits * k);
			}
			words[r * nw + w] = word;
		}
	return 0;
}

typedef struct {
	const int8_t *codes;
	int64_t rows, cols, out, in;
	int bits;
	uint32_t *words;
} pack_job;

static int ct_rows_range(void *p, int64_t r0, int64_t r1)
{
	const pack_job *j = p;
	int bits = j->bits, pf = per_word(bits);
	int64_t cols = j->cols, nw = ceil_div(cols, pf), full = cols / pf;
	uint32_t over = 0;
	for (int64_t r = r0; r < r1; r++) {
		const int8_t *c = j->codes + r * cols;
		uint32_t *o = j->words + r * nw;
		if (bits == 4) {
			for (int64_t w = 0; w < full; w++, c += 8) {
				uint32_t word = 0;
				for (int k = 0; k < 8; k++) {
					uint32_t u = UFIELD(c[k], 4);
					over |= u;
					word |= u << (4 * k);
				}
				o[w] = word;
			}
		} else {
			for (int64_t w = 0; w < full; w++, c += 4)
				o[w] = UFIELD(c[0], 8) | UFIELD(c[1], 8) << 8 | UFIELD(c[2], 8) << 16 |
				       UFIELD(c[3], 8) << 24;
		}
		if (full < nw) {
			uint32_t word = 0;
			for (int64_t k = 0; k < cols - full * pf; k++) {
				uint32_t u = UFIELD(c[k], bits);
				if (bits == 4)
					over |= u;
				word |= u << (bits * k);
			}
			o[full] = word;
		}
	}
	if (over & 0xf0)
		return code_range_err(j->codes, r0 * cols, (r1 - r0) * cols, bits);
	return 0;
}

static int ct_rows(const int8_t *codes, int64_t rows, int64_t cols, int bits, uint32_t *words,
                   int threads)
{
	pack_job j = { codes, rows, cols, 0, 0, bits, words };
	return parallel(threads, rows, 64, ct_rows_range, &j);
}

int qc_pack_ct_rows(const int8_t *codes, int64_t rows, int64_t cols, int bits, uint32_t *words)
{
	return ct_rows(codes, rows, cols, bits, words, 1);
}

void qc_unpack_ct_rows(const uint32_t *words, int64_t rows, int64_t cols, int bits, int8_t *codes)
{
	int pf = per_word(bits), off = 1 << (bits - 1);
	uint32_t mask = (1u << bits) - 1;
	int64_t nw = ceil_div(cols, pf);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			codes[r * cols + c] =
			        (int8_t)((int)((words[r * nw + c / pf] >> (bits * (c % pf))) & mask) - off);
}

int qc_pack_ct_cols(const int8_t *zp, int64_t rows, int64_t ng, int bits, uint32_t *words)
{
	int pf = per_word(bits), lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
	int64_t nr = ceil_div(rows, pf);
	for (int64_t R = 0; R < nr; R++)
		for (int64_t g = 0; g < ng; g++) {
			uint32_t word = 0;
			for (int k = 0; k < pf && R * pf + k < rows; k++) {
				int z = zp[(R * pf + k) * ng + g];
				if (z < lo || z > hi)
					return qc_seterr(QC_EFORMAT, "zero point %d at [%lld, %lld] is outside the "
					                 "%d-bit range [%d, %d]", z, (long long)(R * pf + k),
					                 (long long)g, bits, lo, hi);
				word |= (uint32_t)(z - lo) << (bits * k);
			}
			words[R * ng + g] = word;
		}
	return 0;
}

void qc_unpack_ct_cols(const uint32_t *words, int64_t rows, int64_t ng, int bits, int8_t *zp)
{
	int pf = per_word(bits), off = 1 << (bits - 1);
	uint32_t mask = (1u << bits) - 1;
	for (int64_t r = 0; r < rows; r++)
		for (int64_t g = 0; g < ng; g++)
			zp[r * ng + g] =
			        (int8_t)((int)((words[(r / pf) * ng + g] >> (bits * (r % pf))) & mask) - off);
}

/* ---- GPTQ ---- */

int qc_pack_gptq_qweight_ref(const int8_t *codes, int64_t out, int64_t in, int bits, uint32_t *qw)
{
	int pf = per_word(bits), lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
	if (in % pf)
		return qc_seterr(QC_EINVAL, "gptq qweight: %lld input features are not a multiple of %d",
		                 (long long)in, pf);
	for (int64_t R = 0; R < in / pf; R++)
		for (int64_t n = 0; n < out; n++) {
			uint32_t word = 0;
			for (int j = 0; j < pf; j++) {
				int q = codes[n * in + R * pf + j];
				if (q < lo || q > hi)
					return code_range_err(codes, 0, out * in, bits);
				word |= (uint32_t)(q - lo) << (bits * j);
			}
			qw[R * out + n] = word;
		}
	return 0;
}

/* Rows n0..n1 of the output (columns of qweight), 16 at a time so that each
 * word row of qweight is written 64 contiguous bytes at once while 16 code
 * rows are read forward. */
static int gptq_qweight_range(void *p, int64_t n0, int64_t n1)
{
	const pack_job *j = p;
	int bits = j->bits, pf = per_word(bits);
	int64_t out = j->out, in = j->in, nR = in / pf;
	uint32_t over = 0;
	for (int64_t nb = n0; nb < n1; nb += 16) {
		int64_t ne = nb + 16 < n1 ? nb + 16 : n1;
		for (int64_t R = 0; R < nR; R++) {
			uint32_t *o = j->words + R * out;
			for (int64_t n = nb; n < ne; n++) {
				const int8_t *c = j->codes + n * in + R * pf;
				uint32_t word;
				if (bits == 4) {
					word = 0;
					for (int k = 0; k < 8; k++) {
						uint32_t u = UFIELD(c[k], 4);
						over |= u;
						word |= u << (4 * k);
					}
				} else {
					word = UFIELD(c[0], 8) | UFIELD(c[1], 8) << 8 | UFIELD(c[2], 8) << 16 |
					       UFIELD(c[3], 8) << 24;
				}
				o[n] = word;
			}
		}
	}
	if (over & 0xf0)
		return code_range_err(j->codes, n0 * in, (n1 - n0) * in, bits);
	return 0;
}

static int gptq_qweight(const int8_t *codes, int64_t out, int64_t in, int bits, uint32_t *qw,
                        int threads)
{
	if (in % per_word(bits))
		return qc_seterr(QC_EINVAL, "gptq qweight: %lld input features are not a multiple of %d",
		                 (long long)in, per_word(bits));
	pack_job j = { codes, 0, 0, out, in, bits, qw };
	return parallel(threads, out, 16, gptq_qweight_range, &j);
}

int qc_pack_gptq_qweight(const int8_t *codes, int64_t out, int64_t in, int bits, uint32_t *qw)
{
	return gptq_qweight(codes, out, in, bits, qw, 1);
}

void qc_unpack_gptq_qweight(const uint32_t *qw, int64_t out, int64_t in, int bits, int8_t *codes)
{
	int pf = per_word(bits), off = 1 << (bits - 1);
	uint32_t mask = (1u << bits) - 1;
	for (int64_t n = 0; n < out; n++)
		for (int64_t k = 0; k < in; k++)
			codes[n * in + k] = (int8_t)((int)((qw[(k / pf) * out + n] >> (bits * (k % pf))) & mask) - off);
}

int qc_pack_gptq_qzeros(const int8_t *zp, int64_t out, int64_t ng, int bits, int v2, uint32_t *qz)
{
	int pf = per_word(bits), off = 1 << (bits - 1);
	if (out % pf)
		return qc_seterr(QC_EINVAL, "gptq qzeros: %lld output features are not a multiple of %d",
		                 (long long)out, pf);
	for (int64_t g = 0; g < ng; g++)
		for (int64_t C = 0; C < out / pf; C++) {
			uint32_t word = 0;
			for (int j = 0; j < pf; j++) {
				int64_t n = C * pf + j;
				int z = (zp ? zp[n * ng + g] : 0) + off;   /* unsigned zero point */
				if (z < 0 || z > 2 * off - 1)
					return qc_seterr(QC_EFORMAT, "zero point %d at [%lld, %lld] is outside the "
					                 "%d-bit range", z - off, (long long)n, (long long)g, bits);
				if (!v2 && z == 0)
					return qc_seterr(QC_EUNSUPPORTED, "zero point at [%lld, %lld] is the lowest "
					                 "code, which GPTQ v1 (stored minus one) cannot hold",
					                 (long long)n, (long long)g);
				word |= (uint32_t)(v2 ? z : z - 1) << (bits * j);
			}
			qz[g * (out / pf) + C] = word;
		}
	return 0;
}

int qc_unpack_gptq_qzeros(const uint32_t *qz, int64_t out, int64_t ng, int bits, int v2, int8_t *zp)
{
	int pf = per_word(bits), off = 1 << (bits - 1);
	uint32_t mask = (1u << bits) - 1;
	for (int64_t n = 0; n < out; n++)
		for (int64_t g = 0; g < ng; g++) {
			int z = (int)((qz[g * (out / pf) + n / pf] >> (bits * (n % pf))) & mask) + (v2 ? 0 : 1);
			if (z > 2 * off - 1)
				return qc_seterr(QC_EFORMAT, "zero point field at [%lld, %lld] reads %d, beyond "
				                 "the %d-bit range", (long long)n, (long long)g, z, bits);
			zp[n * ng + g] = (int8_t)(z - off);
		}
	return 0;
}

/* ---- AWQ ---- */

/* nibble i of a word holds output column 8C + awq_order[i]; column 8C + j
 * lives in nibble awq_rev[j] */
static const int awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
static const int awq_rev[8] = { 0, 4, 1, 5, 2, 6, 3, 7 };

int qc_pack_awq_qweight_ref(const int8_t *codes, int64_t out, int64_t in, uint32_t *qw)
{
	if (out % 8)
		return qc_seterr(QC_EINVAL, "awq qweight: %lld output features are not a multiple of 8",
		                 (long long)out);
	for (int64_t k = 0; k < in; k++)
		for (int64_t C = 0; C < out / 8; C++) {
			uint32_t word = 0;
			for (int i = 0; i < 8; i++) {
				int q = codes[(C * 8 + awq_order[i]) * in + k];
				if (q < -8 || q > 7)
					return code_range_err(codes, 0, out * in, 4);
				word |= (uint32_t)(q + 8) << (4 * i);
			}
			qw[k * (out / 8) + C] = word;
		}
	return 0;
}

/* Word columns C0..C1 (output rows 8*C0 .. 8*C1): 8 rows at a time, read
 * forward along k; the 8 codes of word (k, C) come from rows 8C..8C+7. */
static int awq_qweight_range(void *p, int64_t C0, int64_t C1)
{
	const pack_job *j = p;
	int64_t in = j->in, nC = j->out / 8;
	uint32_t over = 0;
	for (int64_t C = C0; C < C1; C++) {
		const int8_t *row[8];
		for (int r = 0; r < 8; r++)
			row[r] = j->codes + (C * 8 + r) * in;
		for (int64_t k = 0; k < in; k++) {
			uint32_t word = 0;
			for (int r = 0; r < 8; r++) {
				uint32_t u = UFIELD(row[r][k], 4);
				over |= u;
				word |= u << (4 * awq_rev[r]);
			}
			j->words[k * nC + C] = word;
		}
	}
	if (over & 0xf0)
		return code_range_err(j->codes, C0 * 8 * in, (C1 - C0) * 8 * in, 4);
	return 0;
}

static int awq_qweight(const int8_t *codes, int64_t out, int64_t in, uint32_t *qw, int threads)
{
	if (out % 8)
		return qc_seterr(QC_EINVAL, "awq qweight: %lld output features are not a multiple of 8",
		                 (long long)out);
	pack_job j = { codes, 0, 0, out, in, 4, qw };
	return parallel(threads, out / 8, 4, awq_qweight_range, &j);
}

int qc_pack_awq_qweight(const int8_t *codes, int64_t out, int64_t in, uint32_t *qw)
{
	return awq_qweight(codes, out, in, qw, 1);
}

void qc_unpack_awq_qweight(const uint32_t *qw, int64_t out, int64_t in, int8_t *codes)
{
	for (int64_t n = 0; n < out; n++)
		for (int64_t k = 0; k < in; k++)
			codes[n * in + k] =
			        (int8_t)((int)((qw[k * (out / 8) + n / 8] >> (4 * awq_rev[n % 8])) & 15) - 8);
}

int qc_pack_awq_qzeros(const int8_t *zp, int64_t out, int64_t ng, uint32_t *qz)
{
	if (out % 8)
		return qc_seterr(QC_EINVAL, "awq qzeros: %lld output features are not a multiple of 8",
		                 (long long)out);
	for (int64_t g = 0; g < ng; g++)
		for (int64_t C = 0; C < out / 8; C++) {
			uint32_t word = 0;
			for (int i = 0; i < 8; i++) {
				int64_t n = C * 8 + awq_order[i];
				int z = zp ? zp[n * ng + g] : 0;
				if (z < -8 || z > 7)
					return qc_seterr(QC_EFORMAT, "zero point %d at [%lld, %lld] is outside the "
					                 "4-bit range [-8, 7]", z, (long long)n, (long long)g);
				word |= (uint32_t)(z + 8) << (4 * i);
			}
			qz[g * (out / 8) + C] = word;
		}
	return 0;
}

void qc_unpack_awq_qzeros(const uint32_t *qz, int64_t out, int64_t ng, int8_t *zp)
{
	for (int64_t n = 0; n < out; n++)
		for (int64_t g = 0; g < ng; g++)
			zp[n * ng + g] = (int8_t)((int)((qz[g * (out / 8) + n / 8] >> (4 * awq_rev[n % 8])) & 15) - 8);
}

/* ---- scales ---- */

static float scale_at(const void *src, qc_dtype dt, int64_t i)
{
	uint16_t h;
	float f;
	switch (dt) {
	case QC_DT_BF16:
		memcpy(&h, (const char *)src + 2 * i, 2);
		return qc_bf16_to_f32(h);
	case QC_DT_F16:
		memcpy(&h, (const char *)src + 2 * i, 2);
		return qc_f16_to_f32(h);
	case QC_DT_F32:
		memcpy(&f, (const char *)src + 4 * i, 4);
		return f;
	default:
		return NAN;
	}
}

int qc_pack_scales_f16(const void *src, qc_dtype dt, int64_t rows, int64_t ng, uint16_t *dst,
                       const char *what)
{
	if (dt != QC_DT_BF16 && dt != QC_DT_F16 && dt != QC_DT_F32)
		return qc_seterr(QC_EUNSUPPORTED, "scales of '%s' are %s; BF16, F16 or F32 expected", what,
		                 qc_dtype_name(dt));
	for (int64_t r = 0; r < rows; r++)
		for (int64_t g = 0; g < ng; g++) {
			float v = scale_at(src, dt, r * ng + g);
			uint16_t h = qc_f32_to_f16(v);
			if (!isfinite(v) || !(v > 0))
				return qc_seterr(QC_EFORMAT, "scale %g of '%s' at [%lld, %lld] is not a finite "
				                 "positive number", (double)v, what, (long long)r, (long long)g);
			if (qc_f16_to_f32(h) != v)
				return qc_seterr(QC_EUNSUPPORTED, "scale %.9g of '%s' at [%lld, %lld] is not "
				                 "representable in F16, which this format stores scales in "
				                 "(F16 would hold %.9g); use -f compressed-tensors, which keeps "
				                 "%s scales", (double)v, what, (long long)r, (long long)g,
				                 (double)qc_f16_to_f32(h), qc_dtype_name(dt));
			dst[g * rows + r] = h;
		}
	return 0;
}

// ---------------------------------------------------------------- one Linear

void qc_pack_out_free(qc_pack_out *o)
{
	for (int i = 0; i < o->n; i++) {
		free(o->t[i].data);
		o->t[i].data = NULL;
	}
	o->n = 0;
}

static qc_pack_tensor *add_t(qc_pack_out *o, const char *suffix, qc_dtype dt, int ndim, int64_t d0,
                             int64_t d1)
{
	qc_pack_tensor *t = &o->t[o->n++];
	memset(t, 0, sizeof *t);
	t->suffix = suffix;
	t->dtype = dt;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	int64_t numel = ndim == 1 ? d0 : d0 * d1;
	t->nbytes = (size_t)qc_nbytes(dt, numel);
	return t;
}

static int64_t groups_of(const qc_qargs *w, int64_t in)
{
	return w->strategy == QC_QS_GROUP ? ceil_div(in, w->group_size) : 1;
}

int qc_pack_layout(const qc_pack_spec *spec, int64_t out, int64_t in, qc_dtype scale_dt,
                   int input_scale, int input_zp, qc_pack_out *o)
{
	memset(o, 0, sizeof *o);
	const qc_qargs *w = &spec->w;
	int64_t ng = groups_of(w, in), srows = w->strategy == QC_QS_TENSOR ? 1 : out;
	int pf = per_word(w->bits);
	int sym = w->symmetric || w->is_float;
	switch (spec->format) {
	case QC_PACK_CT:
		if (spec->ct_packed) {
			add_t(o, "weight_packed", QC_DT_I32, 2, out, ceil_div(in, pf));
		} else {
			add_t(o, "weight", w->is_float ? QC_DT_F8_E4M3 : QC_DT_I8, 2, out, in)->copied = 1;
		}
		if (w->strategy == QC_QS_TENSOR)
			add_t(o, "weight_scale", scale_dt, 1, 1, 0)->copied = 1;
		else
			add_t(o, "weight_scale", scale_dt, 2, srows, ng)->copied = 1;
		if (spec->ct_packed)
			add_t(o, "weight_shape", QC_DT_I64, 1, 2, 0);
		if (!sym) {
			if (spec->ct_packed)
				add_t(o, "weight_zero_point", QC_DT_I32, 2, ceil_div(out, pf), ng);
			else if (w->strategy == QC_QS_TENSOR)
				add_t(o, "weight_zero_point", QC_DT_I8, 1, 1, 0)->copied = 1;
			else
				add_t(o, "weight_zero_point", QC_DT_I8, 2, srows, ng)->copied = 1;
		}
		if (input_scale)
			add_t(o, "input_scale", scale_dt, 1, 1, 0)->copied = 1;
		if (input_zp)
			add_t(o, "input_zero_point", QC_DT_I8, 1, 1, 0)->copied = 1;
		return 0;
	case QC_PACK_GPTQ:
		add_t(o, "qweight", QC_DT_I32, 2, in / pf, out);
		add_t(o, "qzeros", QC_DT_I32, 2, ng, out / pf);
		add_t(o, "scales", QC_DT_F16, 2, ng, out);
		add_t(o, "g_idx", QC_DT_I32, 1, in, 0);
		return 0;
	case QC_PACK_AWQ:
		add_t(o, "qweight", QC_DT_I32, 2, in, out / 8);
		add_t(o, "qzeros", QC_DT_I32, 2, ng, out / 8);
		add_t(o, "scales", QC_DT_F16, 2, ng, out);
		return 0;
	}
	return qc_seterr(QC_EINVAL, "unknown pack format %d", (int)spec->format);
}

static int alloc_data(qc_pack_tensor *t)
{
	if (!(t->data = malloc(t->nbytes ? t->nbytes : 1)))
		return nomem();
	return 0;
}

/* a tensor stored as it is: the input's own view (dtype and shape kept, so
 * the [out] and [] spellings of channel and tensor scales survive) */
static void borrow(qc_pack_tensor *t, const qc_tensor *src)
{
	t->dtype = src->dtype;
	t->ndim = src->ndim;
	t->shape[0] = src->ndim > 0 ? src->shape[0] : 0;
	t->shape[1] = src->ndim > 1 ? src->shape[1] : 0;
	t->nbytes = src->nbytes;
	t->borrowed = src->data;
}

static qc_pack_tensor *find_t(qc_pack_out *o, const char *suffix)
{
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->t[i].suffix, suffix) == 0)
			return &o->t[i];
	return NULL;
}

int qc_pack_linear(const qc_pack_spec *spec, const qc_ctq_linear *L, int threads, qc_pack_out *o)
{
	memset(o, 0, sizeof *o);
	if (!L->quantized || L->format != QC_CTQ_NAIVE)
		return qc_seterr(QC_EINVAL, "cannot pack '%s': it is not a naive-quantized Linear", L->module);
	const qc_qargs *w = &spec->w;
	if (L->args.bits != w->bits || L->args.is_float != w->is_float ||
	    L->args.strategy != w->strategy || L->args.symmetric != w->symmetric ||
	    (w->strategy == QC_QS_GROUP && L->args.group_size != w->group_size))
		return qc_seterr(QC_EINVAL, "cannot pack '%s': its scheme is not the spec's", L->module);
	int64_t out = L->out, in = L->in, ng = groups_of(w, in);
	QC_TRY(qc_pack_check_linear(spec, L->module, out, in));
	QC_TRY(qc_pack_layout(spec, out, in, L->scale->dtype, L->input_scale != NULL,
	                      L->input_zp != NULL, o));
	const int8_t *codes = L->weight->data;
	const int8_t *zp = L->zero_point ? L->zero_point->data : NULL;
	int bits = w->bits, rc = 0;
	char what[240];
	snprintf(what, sizeof what, "%s.weight_scale", L->module);
	qc_pack_tensor *t;
	switch (spec->format) {
	case QC_PACK_CT:
		borrow(find_t(o, "weight_scale"), L->scale);
		if (L->input_scale)
			borrow(find_t(o, "input_scale"), L->input_scale);
		if (L->input_zp)
			borrow(find_t(o, "input_zero_point"), L->input_zp);
		if (!spec->ct_packed) {
			borrow(find_t(o, "weight"), L->weight);
			if (zp)
				borrow(find_t(o, "weight_zero_point"), L->zero_point);
			return 0;
		}
		t = find_t(o, "weight_packed");
		if ((rc = alloc_data(t)) || (rc = ct_rows(codes, out, in, bits, t->data, threads)))
			break;
		t = find_t(o, "weight_shape");
		if ((rc = alloc_data(t)))
			break;
		((int64_t *)t->data)[0] = out;
		((int64_t *)t->data)[1] = in;
		if (zp) {
			t = find_t(o, "weight_zero_point");
			if ((rc = alloc_data(t)) || (rc = qc_pack_ct_cols(zp, out, ng, bits, t->data)))
				break;
		}
		return 0;
	case QC_PACK_GPTQ:
		t = find_t(o, "qweight");
		if ((rc = alloc_data(t)) || (rc = gptq_qweight(codes, out, in, bits, t->data, threads)))
			break;
		t = find_t(o, "qzeros");
		if ((rc = alloc_data(t)) || (rc = qc_pack_gptq_qzeros(zp, out, ng, bits, spec->gptq_v2, t->data)))
			break;
		t = find_t(o, "scales");
		if ((rc = alloc_data(t)) ||
		    (rc = qc_pack_scales_f16(L->scale->data, L->scale->dtype, out, ng, t->data, what)))
			break;
		t = find_t(o, "g_idx");
		if ((rc = alloc_data(t)))
			break;
		for (int64_t k = 0; k < in; k++)
			((int32_t *)t->data)[k] = (int32_t)(w->strategy == QC_QS_GROUP ? k / w->group_size : 0);
		return 0;
	case QC_PACK_AWQ:
		t = find_t(o, "qweight");
		if ((rc = alloc_data(t)) || (rc = awq_qweight(codes, out, in, t->data, threads)))
			break;
		t = find_t(o, "qzeros");
		if ((rc = alloc_data(t)) || (rc = qc_pack_awq_qzeros(zp, out, ng, t->data)))
			break;
		t = find_t(o, "scales");
		if ((rc = alloc_data(t)) ||
		    (rc = qc_pack_scales_f16(L->scale->data, L->scale->dtype, out, ng, t->data, what)))
			break;
		return 0;
	}
	qc_pack_out_free(o);
	if (rc == QC_EFORMAT || rc == QC_EUNSUPPORTED)
		rc = qc_errctx(rc, "packing '%s'", L->module);
	return rc;
}

// ---------------------------------------------------------------- unpacking

void qc_pack_unpacked_free(qc_pack_unpacked *u)
{
	free(u->codes);
	free(u->scales);
	free(u->zps);
	u->codes = u->scales = NULL;
	u->zps = NULL;
}

int qc_pack_stored_suffixes(const qc_pack_spec *spec, const char *const **suffixes, int *n)
{
	static const char *const gptq[] = { "qweight", "qzeros", "scales", "g_idx" };
	static const char *const awq[] = { "qweight", "qzeros", "scales" };
	static const char *const ctp[] = { "weight_packed", "weight_scale", "weight_shape",
		                               "weight_zero_point" };
	static const char *const ctn[] = { "weight", "weight_scale", "weight_zero_point",
		                               "input_scale", "input_zero_point" };
	switch (spec->format) {
	case QC_PACK_GPTQ: *suffixes = gptq; *n = 4; return 0;
	case QC_PACK_AWQ: *suffixes = awq; *n = 3; return 0;
	case QC_PACK_CT:
		if (spec->ct_packed) {
			*suffixes = ctp;
			*n = spec->w.symmetric ? 3 : 4;
		} else {
			*suffixes = ctn;
			*n = 5;
		}
		return 0;
	}
	return qc_seterr(QC_EINVAL, "unknown pack format %d", (int)spec->format);
}

/* the stored tensors of one Linear, fetched through a source */
typedef struct {
	const qc_wsrc *src;
	const char *module;
	int n;
	char names[6][256];
	const qc_tensor *t[6];
} fetched;

static int fetch(fetched *f, const char *suffix, const qc_tensor **t)
{
	char *name = f->names[f->n];
	snprintf(name, 256, "%s.%s", f->module, suffix);
	int rc = f->src->get(f->src->ctx, name, t);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_ENOTFOUND, "tensor '%s' is missing", name);
	if (rc)
		return rc;
	f->t[f->n++] = *t;
	return 0;
}

static void release_all(fetched *f)
{
	for (int i = 0; i < f->n; i++)
		if (f->src->release)
			f->src->release(f->src->ctx, f->names[i]);
	f->n = 0;
}

static int want(const qc_tensor *t, const char *module, const char *suffix, qc_dtype dt, int ndim,
                int64_t d0, int64_t d1)
{
	if (dt != QC_DT_INVALID && t->dtype != dt)
		return qc_seterr(QC_EFORMAT, "tensor '%s.%s' has dtype %s, expected %s", module, suffix,
		                 qc_dtype_name(t->dtype), qc_dtype_name(dt));
	int64_t s[2] = { d0, d1 };
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
		char a[96], b[96];
		return qc_seterr(QC_EFORMAT, "tensor '%s.%s' has shape %s, expected %s", module, suffix,
		                 qc_shape_str(a, sizeof a, t->ndim, t->shape), qc_shape_str(b, sizeof b, ndim, s));
	}
	return 0;
}

static int want_float(const qc_tensor *t, const char *module, const char *suffix)
{
	if (t->dtype != QC_DT_F16 && t->dtype != QC_DT_BF16 && t->dtype != QC_DT_F32)
		return qc_seterr(QC_EFORMAT, "tensor '%s.%s' has dtype %s, expected F16, BF16 or F32",
		                 module, suffix, qc_dtype_name(t->dtype));
	return 0;
}

static int check_dims(const char *module, const char *what, int64_t got, int64_t given)
{
	if (given > 0 && got != given)
		return qc_seterr(QC_EFORMAT, "'%s' stores %lld %s features, config.json implies %lld",
		                 module, (long long)got, what, (long long)given);
	if (got <= 0)
		return qc_seterr(QC_EFORMAT, "'%s' stores %lld %s features", module, (long long)got, what);
	return 0;
}

/* copy src [rows, cols] of es-byte elements into dst [cols, rows] */
static void transpose(void *dst, const void *src, int64_t rows, int64_t cols, size_t es)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			memcpy((char *)dst + (size_t)(c * rows + r) * es, (const char *)src + (size_t)(r * cols + c) * es, es);
}

static int unpack_gptq_awq(const qc_pack_spec *spec, fetched *f, int64_t out, int64_t in,
                           qc_pack_unpacked *u)
{
	const char *m = f->module;
	int gptq = spec->format == QC_PACK_GPTQ;
	int bits = spec->w.bits, pf = per_word(bits);
	const qc_tensor *qw, *qz, *sc, *gi = NULL;
	QC_TRY(fetch(f, "qweight", &qw));
	if (qw->ndim != 2 || qw->dtype != QC_DT_I32)
		return want(qw, m, "qweight", QC_DT_I32, 2, -1, -1);
	if (gptq) {
		QC_TRY(fetch(f, "g_idx", &gi));
		if (gi->ndim != 1 || gi->dtype != QC_DT_I32)
			return want(gi, m, "g_idx", QC_DT_I32, 1, in > 0 ? in : -1, 0);
		QC_TRY(check_dims(m, "input", gi->shape[0], in));
		QC_TRY(check_dims(m, "output", qw->shape[1], out));
		in = gi->shape[0];
		out = qw->shape[1];
		if (in % pf || out % pf)
			return qc_seterr(QC_EFORMAT, "'%s' has %lld x %lld features, not multiples of %d",
			                 m, (long long)out, (long long)in, pf);
		QC_TRY(want(qw, m, "qweight", QC_DT_I32, 2, in / pf, out));
	} else {
		QC_TRY(check_dims(m, "input", qw->shape[0], in));
		QC_TRY(check_dims(m, "output", qw->shape[1] * 8, out));
		in = qw->shape[0];
		out = qw->shape[1] * 8;
	}
	int64_t group = spec->w.strategy == QC_QS_GROUP ? spec->w.group_size : in;
	if (in % group)
		return qc_seterr(QC_EFORMAT, "'%s' has %lld input features, not a multiple of the group "
		                 "size %lld", m, (long long)in, (long long)group);
	int64_t ng = in / group;
	QC_TRY(fetch(f, "qzeros", &qz));
	QC_TRY(want(qz, m, "qzeros", QC_DT_I32, 2, ng, out / pf));
	QC_TRY(fetch(f, "scales", &sc));
	QC_TRY(want_float(sc, m, "scales"));
	QC_TRY(want(sc, m, "scales", sc->dtype, 2, ng, out));
	if (gi) {
		const int32_t *g = gi->data;
		for (int64_t k = 0; k < in; k++)
			if (g[k] != (int32_t)(k / group))
				return qc_seterr(QC_EFORMAT, "tensor '%s.g_idx' holds %d at index %lld, expected "
				                 "%lld (act-order g_idx is not supported)", m, (int)g[k],
				                 (long long)k, (long long)(k / group));
	}
	u->out = out;
	u->in = in;
	u->srows = out;
	u->ng = ng;
	u->scale_dt = sc->dtype;
	size_t es = qc_dtype_size(sc->dtype);
	if (!(u->codes = malloc((size_t)(out * in))) || !(u->scales = malloc((size_t)(out * ng) * es)) ||
	    !(u->zps = malloc((size_t)(out * ng))))
		return nomem();
	if (gptq) {
		qc_unpack_gptq_qweight(qw->data, out, in, bits, u->codes);
		int rc = qc_unpack_gptq_qzeros(qz->data, out, ng, bits, spec->gptq_v2, u->zps);
		if (rc)
			return qc_errctx(rc, "tensor '%s.qzeros'", m);
	} else {
		qc_unpack_awq_qweight(qw->data, out, in, u->codes);
		qc_unpack_awq_qzeros(qz->data, out, ng, u->zps);
	}
	transpose(u->scales, sc->data, ng, out, es);
	if (spec->w.symmetric) {
		for (int64_t i = 0; i < out * ng; i++)
			if (u->zps[i] != 0)
				return qc_seterr(QC_EFORMAT, "tensor '%s.qzeros' of a symmetric scheme holds zero "
				                 "point %d at [%lld, %lld], expected %d", m, u->zps[i] + (1 << (bits - 1)),
				                 (long long)(i / ng), (long long)(i % ng), 1 << (bits - 1));
		free(u->zps);
		u->zps = NULL;
	}
	return 0;
}

static int unpack_ct(const qc_pack_spec *spec, fetched *f, int64_t out, int64_t in,
                     qc_pack_unpacked *u)
{
	const char *m = f->module;
	const qc_qargs *w = &spec->w;
	int bits = w->bits, pf = per_word(bits);
	const qc_tensor *wt, *sc, *zp = NULL;
	int sym = w->symmetric || w->is_float;
	if (spec->ct_packed) {
		const qc_tensor *sh;
		QC_TRY(fetch(f, "weight_shape", &sh));
		if (sh->dtype != QC_DT_I64 && sh->dtype != QC_DT_I32)
			return want(sh, m, "weight_shape", QC_DT_I64, 1, 2, 0);
		QC_TRY(want(sh, m, "weight_shape", sh->dtype, 1, 2, 0));
		int64_t d[2];
		if (sh->dtype == QC_DT_I64) {
			memcpy(d, sh->data, 16);
		} else {
			int32_t d32[2];
			memcpy(d32, sh->data, 8);
			d[0] = d32[0];
			d[1] = d32[1];
		}
		QC_TRY(check_dims(m, "output", d[0], out));
		QC_TRY(check_dims(m, "input", d[1], in));
		out = d[0];
		in = d[1];
		QC_TRY(fetch(f, "weight_packed", &wt));
		QC_TRY(want(wt, m, "weight_packed", QC_DT_I32, 2, out, ceil_div(in, pf)));
	} else {
		QC_TRY(fetch(f, "weight", &wt));
		if (wt->ndim != 2)
			return want(wt, m, "weight", QC_DT_INVALID, 2, out, in);
		QC_TRY(check_dims(m, "output", wt->shape[0], out));
		QC_TRY(check_dims(m, "input", wt->shape[1], in));
		out = wt->shape[0];
		in = wt->shape[1];
		QC_TRY(want(wt, m, "weight", w->is_float ? QC_DT_F8_E4M3 : QC_DT_I8, 2, out, in));
	}
	int64_t ng = groups_of(w, in), srows = w->strategy == QC_QS_TENSOR ? 1 : out;
	QC_TRY(fetch(f, "weight_scale", &sc));
	QC_TRY(want_float(sc, m, "weight_scale"));
	if (qc_numel(sc->ndim, sc->shape) != srows * ng || sc->ndim > 2)
		return want(sc, m, "weight_scale", sc->dtype, 2, srows, ng);
	if (!sym) {
		QC_TRY(fetch(f, "weight_zero_point", &zp));
		if (spec->ct_packed)
			QC_TRY(want(zp, m, "weight_zero_point", QC_DT_I32, 2, ceil_div(out, pf), ng));
		else if (zp->dtype != QC_DT_I8 || qc_numel(zp->ndim, zp->shape) != srows * ng)
			return want(zp, m, "weight_zero_point", QC_DT_I8, 2, srows, ng);
	}
	u->out = out;
	u->in = in;
	u->srows = srows;
	u->ng = ng;
	u->scale_dt = sc->dtype;
	if (!(u->codes = malloc((size_t)(out * in))) || !(u->scales = malloc(sc->nbytes)) ||
	    (zp && !(u->zps = malloc((size_t)(srows * ng)))))
		return nomem();
	memcpy(u->scales, sc->data, sc->nbytes);
	if (spec->ct_packed) {
		qc_unpack_ct_rows(wt->data, out, in, bits, u->codes);
		if (zp)
			qc_unpack_ct_cols(zp->data, out, ng, bits, u->zps);
	} else {
		memcpy(u->codes, wt->data, (size_t)(out * in));
		if (zp)
			memcpy(u->zps, zp->data, (size_t)(srows * ng));
	}
	return 0;
}

int qc_unpack_linear(const qc_pack_spec *spec, const qc_wsrc *src, const char *module,
                     int64_t out, int64_t in, qc_pack_unpacked *u)
{
	memset(u, 0, sizeof *u);
	u->w = spec->w;
	fetched f = { .src = src, .module = module };
	if (strlen(module) > 200)
		return qc_seterr(QC_EINVAL, "module name '%.40s...' too long", module);
	int rc = spec->format == QC_PACK_CT ? unpack_ct(spec, &f, out, in, u)
	                                    : unpack_gptq_awq(spec, &f, out, in, u);
	release_all(&f);
	if (rc)
		qc_pack_unpacked_free(u);
	return rc;
}

int qc_pack_unpacked_rows(const qc_pack_unpacked *u, int64_t r0, int64_t r1, float *w)
{
	if (r0 < 0 || r1 > u->out || r0 > r1)
		return qc_seterr(QC_EINVAL, "rows [%lld, %lld) outside [0, %lld)", (long long)r0,
		                 (long long)r1, (long long)u->out);
	int64_t in = u->in, ng = u->ng;
	int64_t group = u->w.strategy == QC_QS_GROUP ? u->w.group_size : in;
	for (int64_t r = r0; r < r1; r++) {
		int64_t sr = u->srows == 1 ? 0 : r;
		for (int64_t c = 0; c < in; c++) {
			int64_t g = c / group;
			float s = scale_at(u->scales, u->scale_dt, sr * ng + g);
			float z = u->zps ? (float)u->zps[sr * ng + g] : 0.0f;
			float q = u->w.is_float ? qc_fp8e4m3_to_f32(((const uint8_t *)u->codes)[r * in + c])
			                        : (float)((const int8_t *)u->codes)[r * in + c];
			w[(r - r0) * in + c] = (q - z) * s;
		}
	}
	return 0;
}
