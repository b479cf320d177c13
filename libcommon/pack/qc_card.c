/* qc_card.c - quant_card.md (see qc_card.h). */
#include "qc_card.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_io.h"

// ---------------------------------------------------------------- text buffer

typedef struct {
	qc_sink s;
	qc_membuf b;
	int rc;
} out_t;

static void pr(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pr(out_t *o, const char *fmt, ...)
{
	if (o->rc)
		return;
	char small[512], *p = small;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->rc = qc_seterr(QC_EINTERNAL, "formatting the card failed");
		return;
	}
	if ((size_t)n >= sizeof small) {
		if (!(p = malloc((size_t)n + 1))) {
			o->rc = qc_seterr(QC_ENOMEM, "out of memory");
			return;
		}
		va_start(ap, fmt);
		vsnprintf(p, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	o->rc = qc_sink_write(&o->s, p, (size_t)n);
	if (p != small)
		free(p);
}

// ---------------------------------------------------------------- pieces

static const char *strategy_text(const qc_qargs *a, char *buf, size_t n)
{
	switch (a->strategy) {
	case QC_QS_GROUP:
		snprintf(buf, n, "per group of %lld input channels", (long long)a->group_size);
		break;
	case QC_QS_CHANNEL:
		snprintf(buf, n, "per output channel");
		break;
	default:
		snprintf(buf, n, "per tensor");
	}
	return buf;
}

static void scheme_section(out_t *o, const qc_qscheme *s)
{
	const qc_qargs *w = &s->weights;
	char st[64];
	pr(o, "## Scheme\n\n");
	if (w->is_float) {
		pr(o, "- Weights: FP8 E4M3, scales %s, symmetric (scale = amax / 448)\n",
		   strategy_text(w, st, sizeof st));
	} else {
		/* compressed-tensors' ranges: amax / ((qmax - qmin) / 2) when
		 * symmetric, (max - min) / (qmax - qmin) otherwise */
		const char *div = w->bits == 4 ? (w->symmetric ? "7.5" : "15") : (w->symmetric ? "127.5" : "255");
		pr(o, "- Weights: int%d, scales %s, %s (scale = %s / %s, %s)\n", w->bits,
		   strategy_text(w, st, sizeof st), w->symmetric ? "symmetric" : "asymmetric",
		   w->symmetric ? "amax" : "(max - min)", div,
		   w->symmetric ? "zero point 0" : "a zero point per scale");
	}
	switch (s->act) {
	case QC_ACT_NONE:
		pr(o, "- Input activations: not quantized (weight-only)\n");
		break;
	case QC_ACT_DYNAMIC_TOKEN:
		pr(o, "- Input activations: %s, dynamic per-token scales computed at run time\n",
		   s->act_is_float ? "FP8 E4M3" : "int8");
		break;
	case QC_ACT_STATIC_TENSOR:
		pr(o, "- Input activations: %s, one static scale per Linear (input_scale) from "
		      "calibration\n", s->act_is_float ? "FP8 E4M3" : "int8");
		break;
	case QC_ACT_DYNAMIC_TENSOR:
		pr(o, "- Input activations: %s, dynamic per-tensor scales\n", s->act_is_float ? "FP8 E4M3" : "int8");
		break;
	}
	pr(o, "- Not quantized: embeddings, norms");
	for (size_t i = 0; i < s->n_ignore; i++)
		pr(o, ", `%s`", s->ignore[i]);
	pr(o, "\n");
	if (s->kv_cache_fp8)
		pr(o, "- KV cache: FP8 E4M3 with static per-layer k_scale and v_scale\n");
	pr(o, "\n");
}

/* a command line, words separated by spaces, words with spaces or quotes
 * in single quotes (as a shell would take them back) */
static void argv_text(out_t *o, int argc, char *const *argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i] ? argv[i] : "";
		int plain = *a != 0;
		for (const char *p = a; *p; p++)
			if (!(*p == '-' || *p == '_' || *p == '.' || *p == '/' || *p == ':' || *p == '=' ||
			      *p == ',' || *p == '+' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z')))
				plain = 0;
		pr(o, i ? " " : "");
		if (plain) {
			pr(o, "%s", a);
			continue;
		}
		pr(o, "'");
		for (const char *p = a; *p; p++)
			pr(o, *p == '\'' ? "'\\''" : "%c", *p);
		pr(o, "'");
	}
}

static void history_line(out_t *o, const char *tool, const char *version, int argc,
                         char *const *argv)
{
	argv_text(o, argc, argv);
	pr(o, "    # %s %s\n", tool ? tool : "?", version ? version : "");
}

static void method_section(out_t *o, const qc_card_info *in)
{
	pr(o, "## Method\n\nThe commands that made this checkpoint, oldest first (from the "
	      "manifest's history):\n\n```\n");
	size_t n = in->manifest ? qc_manifest_history_count(in->manifest) : 0;
	if (!n)
		pr(o, "(earlier steps not recorded: the input had no manifest)\n");
	for (size_t i = 0; i < n; i++) {
		int argc = 0;
		char *const *argv = NULL;
		qc_manifest_history_argv(in->manifest, i, &argc, &argv);
		history_line(o, qc_manifest_history_tool(in->manifest, i),
		             qc_manifest_history_version(in->manifest, i), argc, argv);
	}
	if (in->run_tool)
		history_line(o, in->run_tool, in->run_version, in->run_argc, in->run_argv);
	pr(o, "```\n\n");
}

// ---------------------------------------------------------------- the report

typedef struct {
	char layer[200];
	double err_out, err_w, err_rtn, key;
} rline;

static double num_or_nan(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static int parse_report(const char *text, size_t len, rline **lines, size_t *n, int64_t *tokens)
{
	*lines = NULL;
	*n = 0;
	*tokens = -1;
	size_t cap = 0, lineno = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *e = memchr(p, '\n', (size_t)(end - p));
		if (!e)
			e = end;
		lineno++;
		if (e > p) {
			json_error_t err;
			json_t *j = json_loadb(p, (size_t)(e - p), 0, &err);
			const json_t *layer = j ? json_object_get(j, "layer") : NULL;
			if (!j || !json_is_object(j) || !json_is_string(layer)) {
				json_decref(j);
				free(*lines);
				*lines = NULL;
				*n = 0;
				return qc_seterr(QC_EFORMAT, "malformed line %zu of the report: not an object "
				                 "with a 'layer'", lineno);
			}
			if (*n == cap) {
				cap = cap ? 2 * cap : 64;
				rline *nl = realloc(*lines, cap * sizeof *nl);
				if (!nl) {
					json_decref(j);
					free(*lines);
					*lines = NULL;
					return qc_seterr(QC_ENOMEM, "out of memory");
				}
				*lines = nl;
			}
			rline *r = &(*lines)[(*n)++];
			snprintf(r->layer, sizeof r->layer, "%s", json_string_value(layer));
			r->err_out = num_or_nan(j, "err_out");
			r->err_w = num_or_nan(j, "err_w");
			r->err_rtn = num_or_nan(j, "err_rtn");
			r->key = isnan(r->err_out) ? r->err_w : r->err_out;
			const json_t *t = json_object_get(j, "n_tokens");
			if (json_is_integer(t) && json_integer_value(t) > *tokens)
				*tokens = json_integer_value(t);
			json_decref(j);
		}
		p = e + 1;
	}
	return 0;
}

/* worst first; unmeasured (NaN) last; ties by layer name so the order is
 * fixed */
static int cmp_worst(const void *a, const void *b)
{
	const rline *x = a, *y = b;
	int nx = isnan(x->key), ny = isnan(y->key);
	if (nx != ny)
		return nx - ny;
	if (!nx && x->key != y->key)
		return x->key < y->key ? 1 : -1;
	return strcmp(x->layer, y->layer);
}

static void num_cell(out_t *o, double v)
{
	if (isnan(v))
		pr(o, " - |");
	else
		pr(o, " %.4g |", v);
}

// ---------------------------------------------------------------- the card

int qc_card_markdown(const qc_card_info *in, char **md, size_t *len)
{
	*md = NULL;
	if (len)
		*len = 0;
	if (!in->scheme)
		return qc_seterr(QC_EINVAL, "quant card: no scheme given");
	rline *lines = NULL;
	size_t nl = 0;
	int64_t tokens = -1;
	if (in->report)
		QC_TRY(parse_report(in->report, in->report_len, &lines, &nl, &tokens));
	out_t o = { .rc = 0 };
	qc_sink_membuf(&o.s, &o.b, "quant_card.md");
	pr(&o, "# %s\n\n", in->title ? in->title : "Quantized model");
	pr(&o, "Written by qpack. The numbers below are copied from the checkpoint's own "
	       "quant_report.jsonl and quant_manifest.json.\n\n");
	scheme_section(&o, in->scheme);

	pr(&o, "## Format\n\n- %s\n", in->format ? in->format : "(not recorded)");
	if (in->loaders)
		pr(&o, "- %s\n", in->loaders);
	for (size_t i = 0; i < in->n_notes; i++)
		pr(&o, "- %s\n", in->notes[i]);
	pr(&o, "\n");

	method_section(&o, in);

	pr(&o, "## Calibration\n\n");
	size_t nts = in->manifest ? qc_manifest_token_set_count(in->manifest) : 0;
	if (!nts)
		pr(&o, "- Token sets: not recorded (no calibration data, or no manifest)\n");
	for (size_t i = 0; i < nts; i++) {
		const char *role;
		qc_h128 h;
		char hex[33];
		if (qc_manifest_token_set(in->manifest, i, &role, &h) == 0)
			pr(&o, "- Token set (%s): XXH3-128 `%s`\n", role, qc_h128_hex(h, hex));
	}
	if (tokens > 0)
		pr(&o, "- Calibration tokens per Linear: %lld\n", (long long)tokens);
	else if (in->report)
		pr(&o, "- Calibration tokens per Linear: 0 (data-free quantization)\n");
	const char *base = in->manifest ? qc_manifest_base(in->manifest) : NULL;
	if (base)
		pr(&o, "- Base model fingerprint: `%s`%s%s\n", base,
		   qc_manifest_base_source(in->manifest) ? " from " : "",
		   qc_manifest_base_source(in->manifest) ? qc_manifest_base_source(in->manifest) : "");
	else
		pr(&o, "- Base model fingerprint: not recorded\n");
	pr(&o, "\n");

	pr(&o, "## Worst layers\n\n");
	if (!in->report) {
		pr(&o, "No quant_report.jsonl was recorded.\n\n");
	} else if (!nl) {
		pr(&o, "The report is empty.\n\n");
	} else {
		qsort(lines, nl, sizeof *lines, cmp_worst);
		size_t k = (size_t)(in->worst > 0 ? in->worst : 5);
		if (k > nl)
			k = nl;
		pr(&o, "The %zu of %zu quantized Linears with the highest relative output error "
		       "err_out = ||(W - Q) X||^2 / ||W X||^2 (err_w = ||W - Q||^2 / ||W||^2 where "
		       "err_out was not measured); err_rtn is err_out of round-to-nearest.\n\n", k, nl);
		pr(&o, "| layer | err_out | err_w | err_rtn |\n|---|---|---|---|\n");
		for (size_t i = 0; i < k; i++) {
			pr(&o, "| `%s` |", lines[i].layer);
			num_cell(&o, lines[i].err_out);
			num_cell(&o, lines[i].err_w);
			num_cell(&o, lines[i].err_rtn);
			pr(&o, "\n");
		}
		pr(&o, "\n");
	}
	free(lines);

	pr(&o, "## Files\n\n- %d safetensors shard%s\n", in->n_shards, in->n_shards == 1 ? "" : "s");
	pr(&o, "- quant_manifest.json records every file's size and XXH3-128 and every "
	       "tensor's XXH3-64; `qverify` and `qcat --verify` check them\n");
	if (o.rc) {
		qc_membuf_free(&o.b);
		return o.rc;
	}
	*md = (char *)o.b.data;
	if (len)
		*len = o.b.len;
	return 0;
}
