/* qc_qscheme.c - compressed-tensors quantization_config (see qc_qscheme.h). */
#include "qc_qscheme.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

/* The compressed-tensors version whose field set we write (doc/formats.md 1.1). */
#define QC_CT_VERSION "0.12.2"
/* backtracking bound of one ignore-regex match (module names are short) */
#define IGNORE_MATCH_LIMIT 100000u

static void scheme_init(qc_qscheme *s)
{
	memset(s, 0, sizeof *s);
	s->weights.scale_dtype = QC_DT_BF16;
	s->weights.arith = QC_DT_F32;
	s->act_symmetric = 1;
	snprintf(s->format, sizeof s->format, "naive-quantized");
	snprintf(s->observer, sizeof s->observer, "minmax");
}

void qc_qscheme_free(qc_qscheme *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_ignore; i++)
		free(s->ignore[i]);
	free(s->ignore);
	s->ignore = NULL;
	s->n_ignore = 0;
}

int qc_qscheme_add_ignore(qc_qscheme *s, const char *pattern)
{
	for (size_t i = 0; i < s->n_ignore; i++)
		if (strcmp(s->ignore[i], pattern) == 0)
			return 0;
	char **n = realloc(s->ignore, (s->n_ignore + 1) * sizeof *n);
	if (!n)
		return qc_seterr(QC_ENOMEM, "out of memory");
	s->ignore = n;
	if (!(n[s->n_ignore] = strdup(pattern)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	s->n_ignore++;
	return 0;
}

int qc_qscheme_preset(qc_qscheme *s, const char *name)
{
	scheme_init(s);
	qc_qargs *w = &s->weights;
	w->symmetric = 1;
	if (strcmp(name, "w4a16") == 0 || strcmp(name, "w4a16-asym") == 0) {
		w->bits = 4;
		w->strategy = QC_QS_GROUP;
		w->group_size = 128;
		w->symmetric = strcmp(name, "w4a16") == 0;
	} else if (strcmp(name, "w8a16") == 0) {
		w->bits = 8;
		w->strategy = QC_QS_CHANNEL;
	} else if (strcmp(name, "w8a8") == 0) {
		w->bits = 8;
		w->strategy = QC_QS_CHANNEL;
		s->act = QC_ACT_DYNAMIC_TOKEN;
	} else if (strcmp(name, "fp8-dynamic") == 0) {
		w->is_float = 1;
		w->bits = 8;
		w->strategy = QC_QS_CHANNEL;
		s->act = QC_ACT_DYNAMIC_TOKEN;
		s->act_is_float = 1;
	} else if (strcmp(name, "fp8-static") == 0) {
		w->is_float = 1;
		w->bits = 8;
		w->strategy = QC_QS_TENSOR;
		s->act = QC_ACT_STATIC_TENSOR;
		s->act_is_float = 1;
	} else {
		return qc_seterr(QC_EINVAL, "unknown scheme '%s' (w4a16, w4a16-asym, w8a16, w8a8, "
		                 "fp8-dynamic, fp8-static)", name);
	}
	return qc_qscheme_add_ignore(s, "lm_head");
}

static const char *strategy_name(qc_qstrategy st)
{
	switch (st) {
	case QC_QS_TENSOR: return "tensor";
	case QC_QS_CHANNEL: return "channel";
	case QC_QS_GROUP: return "group";
	}
	return "tensor";
}

static json_t *args_json(int is_float, int bits, int sym, const char *strategy, int64_t group,
                         int dynamic, const char *observer)
{
	json_t *a = json_object();
	json_object_set_new(a, "actorder", json_null());
	json_object_set_new(a, "block_structure", json_null());
	json_object_set_new(a, "dynamic", json_boolean(dynamic));
	json_object_set_new(a, "group_size", group > 0 ? json_integer(group) : json_null());
	json_object_set_new(a, "num_bits", json_integer(bits));
	json_object_set_new(a, "observer", observer ? json_string(observer) : json_null());
	json_object_set_new(a, "observer_kwargs", json_object());
	json_object_set_new(a, "strategy", json_string(strategy));
	json_object_set_new(a, "symmetric", json_boolean(sym));
	json_object_set_new(a, "type", json_string(is_float ? "float" : "int"));
	return a;
}

int qc_qscheme_to_json(const qc_qscheme *s, json_t **out)
{
	const qc_qargs *w = &s->weights;
	QC_TRY(qc_qargs_check(w));
	json_t *qc = json_object(), *groups = json_object(), *g0 = json_object();
	if (!qc || !groups || !g0) {
		json_decref(qc);
		json_decref(groups);
		json_decref(g0);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	json_t *wargs = args_json(w->is_float, w->bits, w->symmetric, strategy_name(w->strategy),
	                          w->strategy == QC_QS_GROUP ? w->group_size : 0, 0, s->observer);
	json_t *iargs = json_null();
	switch (s->act) {
	case QC_ACT_NONE: break;
	case QC_ACT_DYNAMIC_TOKEN:
		iargs = args_json(s->act_is_float, 8, s->act_symmetric, "token", 0, 1, NULL);
		break;
	case QC_ACT_DYNAMIC_TENSOR:
		iargs = args_json(s->act_is_float, 8, s->act_symmetric, "tensor", 0, 1, NULL);
		break;
	case QC_ACT_STATIC_TENSOR:
		iargs = args_json(s->act_is_float, 8, s->act_symmetric, "tensor", 0, 0, "minmax");
		break;
	}
	json_t *targets = json_array();
	json_array_append_new(targets, json_string("Linear"));
	json_object_set_new(g0, "input_activations", iargs);
	json_object_set_new(g0, "output_activations", json_null());
	json_object_set_new(g0, "targets", targets);
	json_object_set_new(g0, "weights", wargs);
	json_object_set_new(groups, "group_0", g0);
	json_object_set_new(qc, "config_groups", groups);
	json_object_set_new(qc, "format", json_string(s->format));
	json_object_set_new(qc, "global_compression_ratio", json_null());
	json_t *ign = json_array();
	for (size_t i = 0; i < s->n_ignore; i++)
		json_array_append_new(ign, json_string(s->ignore[i]));
	json_object_set_new(qc, "ignore", ign);
	json_object_set_new(qc, "kv_cache_scheme",
	                    s->kv_cache_fp8 ? args_json(1, 8, 1, "tensor", 0, 0, "minmax") : json_null());
	json_object_set_new(qc, "quant_method", json_string("compressed-tensors"));
	json_object_set_new(qc, "quantization_status", json_string("compressed"));
	json_object_set_new(qc, "sparsity_config", json_object());
	json_object_set_new(qc, "transform_config", json_object());
	json_object_set_new(qc, "version", json_string(QC_CT_VERSION));
	*out = qc;
	return 0;
}

/* ---------------------------------------------------------------- parse */

static int get_bool(const json_t *o, const char *k, int dflt)
{
	const json_t *v = json_object_get(o, k);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int parse_args(const json_t *a, const char *what, int *is_float, int *bits, int *sym,
                      char *strategy, size_t ns, int64_t *group, int *dynamic)
{
	if (!json_is_object(a))
		return qc_seterr(QC_EFORMAT, "quantization_config: %s is not an object", what);
	const json_t *t = json_object_get(a, "type");
	const char *ty = json_is_string(t) ? json_string_value(t) : "int";
	if (strcmp(ty, "int") != 0 && strcmp(ty, "float") != 0)
		return qc_seterr(QC_EUNSUPPORTED, "quantization_config: %s type '%s' is not supported",
		                 what, ty);
	*is_float = strcmp(ty, "float") == 0;
	const json_t *nb = json_object_get(a, "num_bits");
	*bits = json_is_integer(nb) ? (int)json_integer_value(nb) : 8;
	*sym = get_bool(a, "symmetric", 1);
	const json_t *d = json_object_get(a, "dynamic");
	/* "local" (a string) is dynamic too */
	*dynamic = json_is_true(d) || json_is_string(d);
	const json_t *st = json_object_get(a, "strategy");
	snprintf(strategy, ns, "%s", json_is_string(st) ? json_string_value(st) : "tensor");
	const json_t *g = json_object_get(a, "group_size");
	*group = json_is_integer(g) ? json_integer_value(g) : 0;
	const json_t *ao = json_object_get(a, "actorder");
	if (json_is_string(ao) && (strcmp(json_string_value(ao), "group") == 0 ||
	                           strcmp(json_string_value(ao), "dynamic") == 0))
		return qc_seterr(QC_EUNSUPPORTED, "quantization_config: %s actorder '%s' (g_idx) is not "
		                 "supported", what, json_string_value(ao));
	return 0;
}

int qc_qscheme_from_json(qc_qscheme *s, const json_t *qc)
{
	scheme_init(s);
	if (!json_is_object(qc))
		return qc_seterr(QC_EFORMAT, "quantization_config is not an object");
	const json_t *qm = json_object_get(qc, "quant_method");
	if (!json_is_string(qm) || strcmp(json_string_value(qm), "compressed-tensors") != 0)
		return qc_seterr(QC_EUNSUPPORTED, "quantization method '%s' is not compressed-tensors",
		                 json_is_string(qm) ? json_string_value(qm) : "?");
	const json_t *fmt = json_object_get(qc, "format");
	if (json_is_string(fmt))
		snprintf(s->format, sizeof s->format, "%s", json_string_value(fmt));
	const json_t *groups = json_object_get(qc, "config_groups");
	if (!json_is_object(groups) || json_object_size(groups) == 0)
		return qc_seterr(QC_EFORMAT, "quantization_config has no config_groups");
	if (json_object_size(groups) > 1)
		return qc_seterr(QC_EUNSUPPORTED, "quantization_config has %zu config groups; only one "
		                 "scheme for all Linear layers is supported", json_object_size(groups));
	const char *gname;
	const json_t *g;
	int rc = 0;
	json_object_foreach((json_t *)groups, gname, g) {
		if (!json_is_object(g))
			return qc_seterr(QC_EFORMAT, "quantization_config: group '%s' is not an object", gname);
		const json_t *gf = json_object_get(g, "format");
		if (json_is_string(gf))
			snprintf(s->format, sizeof s->format, "%s", json_string_value(gf));
		const json_t *oa = json_object_get(g, "output_activations");
		if (oa && !json_is_null(oa))
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: output activation "
			                 "quantization is not supported");
		int is_float, bits, sym, dyn;
		int64_t group;
		char st[32];
		const json_t *wa = json_object_get(g, "weights");
		if (!wa || json_is_null(wa))
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: activation-only schemes are "
			                 "not supported");
		if ((rc = parse_args(wa, "weights", &is_float, &bits, &sym, st, sizeof st, &group, &dyn)))
			return rc;
		qc_qargs *w = &s->weights;
		w->is_float = is_float;
		w->bits = bits;
		w->symmetric = sym;
		if (strcmp(st, "tensor") == 0)
			w->strategy = QC_QS_TENSOR;
		else if (strcmp(st, "channel") == 0)
			w->strategy = QC_QS_CHANNEL;
		else if (strcmp(st, "group") == 0) {
			w->strategy = QC_QS_GROUP;
			w->group_size = group;
		} else
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: weight strategy '%s' is not "
			                 "supported", st);
		if (dyn)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: dynamic weight "
			                 "quantization is not supported");
		const json_t *ob = json_object_get(wa, "observer");
		if (json_is_string(ob))
			snprintf(s->observer, sizeof s->observer, "%s", json_string_value(ob));
		if ((rc = qc_qargs_check(w)))
			return qc_errctx(rc, "quantization_config");
		const json_t *ia = json_object_get(g, "input_activations");
		if (ia && !json_is_null(ia)) {
			if ((rc = parse_args(ia, "input_activations", &is_float, &bits, &sym, st, sizeof st,
			                     &group, &dyn)))
				return rc;
			if (bits != 8)
				return qc_seterr(QC_EUNSUPPORTED, "quantization_config: %d-bit activations are "
				                 "not supported", bits);
			s->act_is_float = is_float;
			s->act_symmetric = sym;
			if (strcmp(st, "token") == 0 && dyn)
				s->act = QC_ACT_DYNAMIC_TOKEN;
			else if (strcmp(st, "tensor") == 0 && dyn)
				s->act = QC_ACT_DYNAMIC_TENSOR;
			else if (strcmp(st, "tensor") == 0)
				s->act = QC_ACT_STATIC_TENSOR;
			else
				return qc_seterr(QC_EUNSUPPORTED, "quantization_config: %s %s input activations "
				                 "are not supported", dyn ? "dynamic" : "static", st);
		}
	}
	const json_t *kv = json_object_get(qc, "kv_cache_scheme");
	if (kv && !json_is_null(kv)) {
		const json_t *t = json_object_get(kv, "type");
		if (!json_is_string(t) || strcmp(json_string_value(t), "float") != 0)
			return qc_seterr(QC_EUNSUPPORTED, "quantization_config: only fp8 kv_cache_scheme is "
			                 "supported");
		s->kv_cache_fp8 = 1;
	}
	const json_t *ign = json_object_get(qc, "ignore");
	if (ign && !json_is_null(ign)) {
		if (!json_is_array(ign))
			return qc_seterr(QC_EFORMAT, "quantization_config: ignore is not a list");
		size_t i;
		const json_t *v;
		json_array_foreach(ign, i, v) {
			if (!json_is_string(v))
				return qc_seterr(QC_EFORMAT, "quantization_config: ignore holds a non-string");
			if ((rc = qc_qscheme_add_ignore(s, json_string_value(v))))
				return rc;
		}
	}
	return 0;
}

int qc_qscheme_ignored(const qc_qscheme *s, const char *module)
{
	for (size_t i = 0; i < s->n_ignore; i++) {
		const char *p = s->ignore[i];
		if (strncmp(p, "re:", 3) != 0) {
			if (strcmp(p, module) == 0)
				return 1;
			continue;
		}
		int err;
		PCRE2_SIZE off;
		pcre2_code *re = pcre2_compile((PCRE2_SPTR)(p + 3), PCRE2_ZERO_TERMINATED,
		                               PCRE2_ANCHORED, &err, &off, NULL);
		if (!re)
			return qc_seterr(QC_EINVAL, "bad ignore regex '%s'", p + 3);
		/* bounded backtracking: a pathological pattern is an error, not a hang */
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
		pcre2_match_context *mc = pcre2_match_context_create(NULL);
		int m = PCRE2_ERROR_NOMEMORY;
		if (md && mc) {
			pcre2_set_match_limit(mc, IGNORE_MATCH_LIMIT);
			pcre2_set_depth_limit(mc, IGNORE_MATCH_LIMIT);
			m = pcre2_match(re, (PCRE2_SPTR)module, strlen(module), 0, 0, md, mc);
		}
		pcre2_match_context_free(mc);
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		if (m >= 0)
			return 1;
		if (m == PCRE2_ERROR_NOMEMORY)
			return qc_seterr(QC_ENOMEM, "out of memory matching ignore regex '%s'", p + 3);
		if (m != PCRE2_ERROR_NOMATCH)
			return qc_seterr(QC_EINVAL, "ignore regex '%s' cannot be matched against '%s' "
			                 "(backtracking limit)", p + 3, module);
	}
	return 0;
}
