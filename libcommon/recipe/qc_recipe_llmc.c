/* qc_recipe_llmc.c - llm-compressor recipes as they are: one stage of
 * modifiers mapped onto steps through the step table (qc_recipe_tools.c).
 *
 * The quantization keys every quantizing modifier shares (targets, ignore,
 * scheme, config_groups, kv_cache_scheme) are read here into one
 * description of the scheme, following compressed-tensors' presets
 * (quant_scheme.py: W4A16 = int4 groups of 128 symmetric, W8A8 = int8
 * channel weights with dynamic per-token int8 activations, FP8_DYNAMIC =
 * FP8 channel weights with dynamic per-token activations, FP8 = FP8 tensor
 * weights with static tensor activations) and its QuantizationArgs fields.
 * Whatever a step cannot do is an error that names the key. The defaults of
 * llm-compressor are kept: a weight observer left out is min-max, so qgptq
 * gets --clip minmax; llm-compressor's AWQ searches scales but not clipping
 * ranges, so qawq gets --no-clip. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_recipe_int.h"

/* the variables of an llm-compressor recipe (it has none of its own) */
static const struct { const char *name, *def; } lc_vars[] = {
	{ "MODEL", "model" },             /* the BF16 checkpoint directory */
	{ "CALIB", "calib.st" },          /* the calibration token set (qcalib) */
	{ "EVAL", "" },                   /* a token set for qverify's function checks */
	{ "FORMAT", "compressed-tensors" },/* release formats, space-separated */
	{ "THREADS", "" }, { "MEM", "" }, { "DEVICE", "" },
	{ "MAX_PPL_RATIO", "" }, { "MAX_KL", "" }, { "MIN_TOP1", "" },
};

int qc_recipe__llmc_vars(qc_recipe *r)
{
	for (size_t i = 0; i < sizeof lc_vars / sizeof lc_vars[0]; i++)
		QC_TRY(qc_recipe__declare(r, lc_vars[i].name, lc_vars[i].def));
	return 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), k = strlen(suf);
	return n > k && strcmp(s + n - k, suf) == 0;
}

int qc_recipe__is_llmc(const qc_ynode *root)
{
	for (int i = 0; i < root->n; i++)
		if (ends_with(root->kids[2 * i]->text, "_stage"))
			return 1;
	return 0;
}

/* ------------------------------------------------------------ the scheme */

typedef struct lcq {
	int set;                /* a scheme was given */
	int bits;               /* 4 or 8 */
	int fp;                 /* FP8 weights */
	int group;              /* group size; -1 per channel; 0 per tensor */
	int sym;
	int act;                /* 0 none, 1 dynamic per token, 2 static per tensor */
	int act_fp;
	int clip_mse;           /* the weights' observer is mse */
	int kv;                 /* FP8 KV-cache scales */
	const char *actorder;   /* weights' actorder, mapped ("static", "none"), or NULL */
	const qc_ynode *at;     /* where the scheme came from, for messages */
	const qc_ynode *kv_at;
	char *ignore[64];
	int n_ignore;
	const qc_ynode *ignore_at;
} lcq;

static int no_equiv(qc_ydoc *d, const qc_ynode *n, const char *mod, const char *what)
{
	return qc_ydoc_err(d, n, "%s: %s has no equivalent in qtoolkit", mod, what);
}

/* The YAML meaning of a scalar as a word for value maps: null, true,
 * false, or the text. */
static int lc_word(qc_ydoc *d, const qc_ynode *n, const char *what, const char **out)
{
	int b;
	if (!n || qc_ynode_null(n))
		return *out = "null", 0;
	char *t;
	QC_TRY(qc_ydoc_text(d, n, what, &t));
	if (!t)
		return *out = "null", 0;
	if (n->plain && qc_recipe__bool(t, &b))
		return *out = b ? "true" : "false", 0;
	*out = t;
	return 0;
}

/* map "a=b c=d": the image of w, or NULL */
static const char *map_value(const char *map, const char *w, char *buf, size_t n)
{
	for (const char *p = map; p && *p;) {
		const char *e = strchr(p, ' '), *eq = strchr(p, '=');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		if (eq && eq < p + k && (size_t)(eq - p) == strlen(w) && memcmp(p, w, strlen(w)) == 0) {
			size_t vl = (size_t)(p + k - eq - 1);
			if (vl >= n)
				vl = n - 1;
			memcpy(buf, eq + 1, vl);
			buf[vl] = 0;
			return buf;
		}
		p = e ? e + 1 : p + k;
	}
	return NULL;
}

static int lc_int(qc_ydoc *d, const qc_ynode *n, const char *what, long *v)
{
	char *t, *end;
	QC_TRY(qc_ydoc_text(d, n, what, &t));
	if (!t || (*v = strtol(t, &end, 10), *end) || end == t)
		return qc_ydoc_err(d, n, "%s: '%s' is not a whole number", what, t ? t : "null");
	return 0;
}

static int lc_bool(qc_ydoc *d, const qc_ynode *n, const char *what, int *b)
{
	char *t;
	QC_TRY(qc_ydoc_text(d, n, what, &t));
	if (!t || !qc_recipe__bool(t, b))
		return qc_ydoc_err(d, n, "%s: '%s' is not true or false", what, t ? t : "null");
	return 0;
}

static int targets_linear(qc_ydoc *d, const qc_ynode *n, const char *what)
{
	if (!n || qc_ynode_null(n))
		return 0;
	const qc_ynode *one[1] = { n };
	const qc_ynode *const *it = n->type == QC_Y_SEQ ? (const qc_ynode *const *)n->kids : one;
	int k = n->type == QC_Y_SEQ ? n->n : 1;
	if (k != 1 || it[0]->type != QC_Y_SCALAR || strcmp(it[0]->text, "Linear") != 0)
		return qc_ydoc_err(d, k ? it[k > 1] : n, "%s: targets other than every Linear have no "
		                   "equivalent in qtoolkit (one scheme for every Linear of the decoder "
		                   "layers; leave some out with ignore)", what);
	return 0;
}

/* compressed-tensors QuantizationArgs of the weights */
static int lc_weights(qc_ydoc *d, const qc_ynode *n, const char *mod, lcq *q)
{
	char what[256];
	snprintf(what, sizeof what, "%s: weights", mod);
	if (!n || n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n, "%s: expected a mapping (num_bits, type, symmetric, strategy, "
		                   "group_size)", what);
	long bits = 8;
	const char *type = "int", *strategy = NULL;
	long gs = -1;
	int has_gs = 0;
	q->sym = 1;
	for (int i = 0; i < n->n; i++) {
		const qc_ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		char ctx[384];
		snprintf(ctx, sizeof ctx, "%s: %s", what, k->text);
		const char *w;
		if (strcmp(k->text, "num_bits") == 0) {
			QC_TRY(lc_int(d, v, ctx, &bits));
		} else if (strcmp(k->text, "type") == 0) {
			QC_TRY(lc_word(d, v, ctx, &type));
			if (strcmp(type, "int") && strcmp(type, "float"))
				return qc_ydoc_err(d, v, "%s: '%s' is not int or float", ctx, type);
		} else if (strcmp(k->text, "symmetric") == 0) {
			QC_TRY(lc_bool(d, v, ctx, &q->sym));
		} else if (strcmp(k->text, "strategy") == 0) {
			QC_TRY(lc_word(d, v, ctx, &strategy));
		} else if (strcmp(k->text, "group_size") == 0) {
			QC_TRY(lc_word(d, v, ctx, &w));
			if (strcmp(w, "null") != 0) {
				QC_TRY(lc_int(d, v, ctx, &gs));
				has_gs = 1;
			}
		} else if (strcmp(k->text, "dynamic") == 0) {
			int dyn;
			QC_TRY(lc_bool(d, v, ctx, &dyn));
			if (dyn)
				return no_equiv(d, v, what, "dynamic weight quantization");
		} else if (strcmp(k->text, "actorder") == 0) {
			char buf[16];
			QC_TRY(lc_word(d, v, ctx, &w));
			if (!(q->actorder = map_value("weight=static static=static null=none false=none", w, buf,
			                              sizeof buf)))
				return qc_ydoc_err(d, v, "%s: '%s' has no equivalent in qtoolkit (weight, static, "
				                   "or null; group order needs a g_idx no step writes)", ctx, w);
			q->actorder = strcmp(buf, "static") == 0 ? "static" : "none";
		} else if (strcmp(k->text, "observer") == 0) {
			QC_TRY(lc_word(d, v, ctx, &w));
			if (!strcmp(w, "mse") || !strcmp(w, "memoryless_mse"))
				q->clip_mse = 1;
			else if (strcmp(w, "minmax") && strcmp(w, "memoryless_minmax") && strcmp(w, "null") &&
			         strcmp(w, "static_minmax"))
				return qc_ydoc_err(d, v, "%s: '%s' has no equivalent in qtoolkit (minmax or mse)", ctx, w);
		} else {
			return qc_ydoc_err(d, k, "%s: '%s' has no equivalent in qtoolkit", what, k->text);
		}
	}
	q->fp = strcmp(type, "float") == 0;
	if (q->fp ? bits != 8 : bits != 4 && bits != 8)
		return qc_ydoc_err(d, n, "%s: %ld-bit %s weights have no equivalent in qtoolkit (int4, int8, "
		                   "FP8)", what, bits, type);
	q->bits = (int)bits;
	if (!strategy)
		strategy = has_gs && gs > 0 ? "group" : "tensor";
	if (strcmp(strategy, "group") == 0) {
		if (!has_gs || !(gs == 32 || gs == 64 || gs == 128))
			return qc_ydoc_err(d, n, "%s: group_size %ld has no equivalent in qtoolkit (32, 64, 128)",
			                   what, has_gs ? gs : 0);
		q->group = (int)gs;
	} else if (strcmp(strategy, "channel") == 0) {
		q->group = -1;
	} else if (strcmp(strategy, "tensor") == 0) {
		q->group = 0;
	} else {
		return qc_ydoc_err(d, qc_ynode_get(n, "strategy"), "%s: strategy '%s' has no equivalent in "
		                   "qtoolkit (group, channel, tensor)", what, strategy);
	}
	if (q->fp && q->group > 0)
		return no_equiv(d, n, what, "FP8 weights in groups");
	if (!q->fp && q->group == 0)
		return no_equiv(d, n, what, "integer weights with one scale per tensor");
	return 0;
}

static int lc_acts(qc_ydoc *d, const qc_ynode *n, const char *mod, lcq *q)
{
	char what[256];
	snprintf(what, sizeof what, "%s: input_activations", mod);
	q->act = 0;
	if (!n || qc_ynode_null(n))
		return 0;
	if (n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n, "%s: expected a mapping or null", what);
	long bits = 8;
	const char *type = "int", *strategy = "tensor";
	int dyn = 0, sym = 1;
	for (int i = 0; i < n->n; i++) {
		const qc_ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		char ctx[384];
		snprintf(ctx, sizeof ctx, "%s: %s", what, k->text);
		const char *w;
		if (strcmp(k->text, "num_bits") == 0)
			QC_TRY(lc_int(d, v, ctx, &bits));
		else if (strcmp(k->text, "type") == 0)
			QC_TRY(lc_word(d, v, ctx, &type));
		else if (strcmp(k->text, "symmetric") == 0)
			QC_TRY(lc_bool(d, v, ctx, &sym));
		else if (strcmp(k->text, "strategy") == 0)
			QC_TRY(lc_word(d, v, ctx, &strategy));
		else if (strcmp(k->text, "dynamic") == 0) {
			QC_TRY(lc_word(d, v, ctx, &w));
			if (strcmp(w, "true") && strcmp(w, "false"))
				return qc_ydoc_err(d, v, "%s: '%s' has no equivalent in qtoolkit (true or false)", ctx, w);
			dyn = strcmp(w, "true") == 0;
		} else if (strcmp(k->text, "observer") == 0)
			QC_TRY(lc_word(d, v, ctx, &w));     /* min-max of the calibration inputs */
		else
			return qc_ydoc_err(d, k, "%s: '%s' has no equivalent in qtoolkit", what, k->text);
	}
	if (bits == 16)
		return 0;      /* 16-bit activations: none quantized */
	if (bits != 8 || (strcmp(type, "int") && strcmp(type, "float")))
		return qc_ydoc_err(d, n, "%s: %ld-bit %s activations have no equivalent in qtoolkit "
		                   "(int8 or FP8)", what, bits, type);
	if (!sym)
		return no_equiv(d, n, what, "asymmetric activations");
	if (strcmp(strategy, "token") == 0 && dyn)
		q->act = 1;
	else if (strcmp(strategy, "tensor") == 0 && !dyn)
		q->act = 2;
	else
		return qc_ydoc_err(d, n, "%s: %s %s activations have no equivalent in qtoolkit (dynamic per "
		                   "token, or static per tensor)", what, dyn ? "dynamic" : "static", strategy);
	q->act_fp = strcmp(type, "float") == 0;
	return 0;
}

static int lc_preset(qc_ydoc *d, const qc_ynode *n, const char *name, const char *mod, lcq *q)
{
	static const struct { const char *name; int bits, fp, group, sym, act, act_fp; } p[] = {
		{ "W4A16", 4, 0, 128, 1, 0, 0 },
		{ "W4A16_ASYM", 4, 0, 128, 0, 0, 0 },
		{ "W8A16", 8, 0, -1, 1, 0, 0 },
		{ "W8A8", 8, 0, -1, 1, 1, 0 },
		{ "INT8", 8, 0, -1, 1, 1, 0 },
		{ "FP8", 8, 1, 0, 1, 2, 1 },
		{ "FP8_DYNAMIC", 8, 1, -1, 1, 1, 1 },
	};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		if (strcmp(p[i].name, name) == 0) {
			q->bits = p[i].bits;
			q->fp = p[i].fp;
			q->group = p[i].group;
			q->sym = p[i].sym;
			q->act = p[i].act;
			q->act_fp = p[i].act_fp;
			return 0;
		}
	return qc_ydoc_err(d, n, "%s: scheme '%s' has no equivalent in qtoolkit (W4A16, W4A16_ASYM, "
	                   "W8A16, W8A8, INT8, FP8, FP8_DYNAMIC)", mod, name);
}

static int lc_is_lm_head(const char *s)
{
	return !strcmp(s, "lm_head") || !strcmp(s, "re:.*lm_head") || !strcmp(s, "re:.*lm_head$") ||
	       !strcmp(s, "re:lm_head") || !strcmp(s, "re:lm_head$");
}

/* ignore: lm_head is never quantized; other names and re: patterns are
 * --ignore's own syntax */
static int lc_ignore(qc_ydoc *d, const qc_ynode *n, const char *mod, lcq *q)
{
	if (!n || qc_ynode_null(n))
		return 0;
	const qc_ynode *one[1] = { n };
	const qc_ynode *const *it = n->type == QC_Y_SEQ ? (const qc_ynode *const *)n->kids : one;
	int k = n->type == QC_Y_SEQ ? n->n : 1;
	char what[256];
	snprintf(what, sizeof what, "%s: ignore", mod);
	q->ignore_at = n;
	for (int i = 0; i < k; i++) {
		char *t;
		QC_TRY(qc_ydoc_text(d, it[i], what, &t));
		if (!t || lc_is_lm_head(t))
			continue;
		if (q->n_ignore == 64)
			return qc_ydoc_err(d, it[i], "%s: more than 64 entries", what);
		for (const unsigned char *p = (const unsigned char *)t; *p; p++)
			if (*p < 0x20)
				return qc_ydoc_err(d, it[i], "%s: holds a control character", what);
		q->ignore[q->n_ignore++] = t;
	}
	return 0;
}

/* A quantization key of a modifier (targets ignore scheme config_groups
 * kv_cache_scheme); 1 when k was one, 0 when not, or an error. */
static int lc_quant_key(qc_ydoc *d, const qc_ynode *k, const qc_ynode *v, const char *mod, lcq *q)
{
	char what[128];
	snprintf(what, sizeof what, "%s: %s", mod, k->text);
	if (strcmp(k->text, "targets") == 0) {
		QC_TRY(targets_linear(d, v, what));
		return 1;
	}
	if (strcmp(k->text, "ignore") == 0) {
		QC_TRY(lc_ignore(d, v, mod, q));
		return 1;
	}
	if (strcmp(k->text, "scheme") == 0) {
		if (q->set)
			return qc_ydoc_err(d, k, "%s: both scheme and config_groups: give one", mod);
		if (v && v->type == QC_Y_MAP) {
			/* {PRESET: [targets]} */
			if (v->n != 1)
				return qc_ydoc_err(d, v, "%s: several schemes have no equivalent in qtoolkit "
				                   "(one scheme for every Linear)", what);
			QC_TRY(targets_linear(d, v->kids[1], what));
			QC_TRY(lc_preset(d, v->kids[0], v->kids[0]->text, mod, q));
		} else {
			char *t;
			QC_TRY(qc_ydoc_text(d, v, what, &t));
			if (!t)
				return 1;
			QC_TRY(lc_preset(d, v, t, mod, q));
		}
		q->set = 1;
		q->at = v;
		return 1;
	}
	if (strcmp(k->text, "config_groups") == 0) {
		if (q->set)
			return qc_ydoc_err(d, k, "%s: both scheme and config_groups: give one", mod);
		if (!v || v->type != QC_Y_MAP || v->n == 0)
			return qc_ydoc_err(d, v ? v : k, "%s: expected a mapping of groups", what);
		if (v->n > 1)
			return qc_ydoc_err(d, v->kids[2], "%s: a second group ('%s') has no equivalent in "
			                   "qtoolkit (one scheme for every Linear)", what, v->kids[2]->text);
		const qc_ynode *g = v->kids[1];
		char gw[160];
		snprintf(gw, sizeof gw, "%s: %s", what, v->kids[0]->text);
		if (!g || g->type != QC_Y_MAP)
			return qc_ydoc_err(d, g ? g : v->kids[0], "%s: expected a mapping (targets, weights, "
			                   "input_activations)", gw);
		const qc_ynode *w = NULL, *a = NULL;
		for (int i = 0; i < g->n; i++) {
			const qc_ynode *gk = g->kids[2 * i], *gv = g->kids[2 * i + 1];
			if (strcmp(gk->text, "targets") == 0)
				QC_TRY(targets_linear(d, gv, gw));
			else if (strcmp(gk->text, "weights") == 0)
				w = gv;
			else if (strcmp(gk->text, "input_activations") == 0)
				a = gv;
			else if (strcmp(gk->text, "output_activations") == 0) {
				if (!qc_ynode_null(gv))
					return no_equiv(d, gv, gw, "output activation quantization");
			} else
				return qc_ydoc_err(d, gk, "%s: '%s' has no equivalent in qtoolkit", gw, gk->text);
		}
		if (!w)
			return qc_ydoc_err(d, g, "%s: no weights", gw);
		QC_TRY(lc_weights(d, w, gw, q));
		QC_TRY(lc_acts(d, a, gw, q));
		q->set = 1;
		q->at = v;
		return 1;
	}
	if (strcmp(k->text, "kv_cache_scheme") == 0) {
		if (!v || qc_ynode_null(v))
			return 1;
		if (v->type != QC_Y_MAP)
			return qc_ydoc_err(d, v, "%s: expected a mapping", what);
		long bits = 8;
		const char *type = "int", *strategy = "tensor", *w;
		int sym = 1, dyn = 0;
		for (int i = 0; i < v->n; i++) {
			const qc_ynode *kk = v->kids[2 * i], *kv = v->kids[2 * i + 1];
			char ctx[192];
			snprintf(ctx, sizeof ctx, "%s: %s", what, kk->text);
			if (strcmp(kk->text, "num_bits") == 0)
				QC_TRY(lc_int(d, kv, ctx, &bits));
			else if (strcmp(kk->text, "type") == 0)
				QC_TRY(lc_word(d, kv, ctx, &type));
			else if (strcmp(kk->text, "symmetric") == 0)
				QC_TRY(lc_bool(d, kv, ctx, &sym));
			else if (strcmp(kk->text, "strategy") == 0)
				QC_TRY(lc_word(d, kv, ctx, &strategy));
			else if (strcmp(kk->text, "dynamic") == 0)
				QC_TRY(lc_bool(d, kv, ctx, &dyn));
			else if (strcmp(kk->text, "observer") == 0)
				QC_TRY(lc_word(d, kv, ctx, &w));
			else
				return qc_ydoc_err(d, kk, "%s: '%s' has no equivalent in qtoolkit", what, kk->text);
		}
		if (bits != 8 || strcmp(type, "float") || !sym || dyn || strcmp(strategy, "tensor"))
			return no_equiv(d, v, what, "a KV cache other than FP8 per tensor with static scales");
		q->kv = 1;
		q->kv_at = k;
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ steps */

/* Set option key of c to val; what names the recipe's key in messages
 * (NULL: the option's own name). */
static int set_opt_as(qc_ydoc *d, const qc_ynode *at, qc_recipe__call *c, const char *key,
                      const char *val, const char *what)
{
	const qc_rt_opt *o = qc_recipe__opt(c->tool, key);
	if (!o)
		return qc_ydoc_err(d, at, "%s takes no %s (the step table and the modifier map disagree)",
		                   c->tool->name, key);
	if (qc_recipe__check_value(o, val) != 0)
		return qc_ydoc_err(d, at, "%s: %s", what ? what : key, qc_errmsg());
	return qc_recipe__call_set(d->r, c, o, val);
}

static int set_opt(qc_ydoc *d, const qc_ynode *at, qc_recipe__call *c, const char *key, const char *val)
{
	return set_opt_as(d, at, c, key, val, NULL);
}

/* Put scheme q onto step s (qgptq, qawq or qfp8). */
static int apply_scheme(qc_ydoc *d, qc_recipe__step *s, const lcq *q, const char *mod, const qc_ynode *at)
{
	qc_recipe__call *c = &s->call;
	const char *tool = c->tool->name;
	char buf[32];
	if (strcmp(tool, "qfp8") == 0) {
		if (q->act == 0)
			return no_equiv(d, at, mod, "FP8 weights without FP8 activations (weight-only FP8)");
		if (!q->act_fp)
			return no_equiv(d, at, mod, "FP8 weights with int8 activations");
		if (q->group == 0)
			QC_TRY(set_opt(d, at, c, "per-tensor", "true"));
		if (q->act == 2)
			QC_TRY(set_opt(d, at, c, "act", "static"));
		if (q->kv)
			QC_TRY(set_opt(d, q->kv_at, c, "kv-cache", "true"));
	} else {
		if (q->fp)
			return qc_ydoc_err(d, at, "%s: FP8 has no equivalent in %s", mod, tool);
		if (q->act && q->act_fp)
			return no_equiv(d, at, mod, "int weights with FP8 activations");
		const char *scheme = q->bits == 4 ? "w4a16" : q->act ? "w8a8" : "w8a16";
		if (q->act && q->bits == 4)
			return no_equiv(d, at, mod, "int4 weights with int8 activations (W4A8)");
		if (q->act && strcmp(tool, "qgptq"))
			return qc_ydoc_err(d, at, "%s: activation quantization has no equivalent in %s (W4A16, "
			                   "W8A16)", mod, tool);
		if (q->act && q->group != -1)
			return no_equiv(d, at, mod, "W8A8 with grouped weights");
		if (q->act && !q->sym)
			return no_equiv(d, at, mod, "W8A8 with asymmetric weights");
		QC_TRY(set_opt(d, at, c, "scheme", scheme));
		int def = q->bits == 4 ? 128 : -1;
		if (q->group != def) {
			snprintf(buf, sizeof buf, "%d", q->group);
			QC_TRY(set_opt(d, at, c, "group-size", buf));
		}
		if (strcmp(tool, "qawq") == 0)
			QC_TRY(set_opt(d, at, c, q->sym ? "sym" : "asym", "true"));
		else if (!q->sym)
			QC_TRY(set_opt(d, at, c, "asym", "true"));
		if (q->act == 2)
			QC_TRY(set_opt(d, at, c, "act", "static"));
		if (strcmp(tool, "qgptq") == 0) {
			QC_TRY(set_opt(d, at, c, "clip", q->clip_mse ? "mse" : "minmax"));
			if (q->actorder && !qc_recipe__call_get(c, "actorder"))
				QC_TRY(set_opt(d, at, c, "actorder", q->actorder));
		} else if (strcmp(tool, "qawq") == 0) {
			QC_TRY(set_opt(d, at, c, "no-clip", "true"));
		}
		if (q->kv)
			return no_equiv(d, q->kv_at, mod, "kv_cache_scheme without FP8 weights (qfp8)");
	}
	for (int i = 0; i < q->n_ignore; i++)
		QC_TRY(set_opt(d, q->ignore_at, c, "ignore", q->ignore[i]));
	return 0;
}

/* SmoothQuant's mappings: [[balance...], smooth]; the two of qsmooth, and
 * v -> o, up -> down as its flags */
static int sq_mappings(qc_ydoc *d, const qc_ynode *n, qc_recipe__step *s)
{
	const char *what = "SmoothQuantModifier: mappings";
	if (!n || qc_ynode_null(n))
		return 0;
	if (n->type != QC_Y_SEQ)
		return qc_ydoc_err(d, n, "%s: expected a list of [[balance layers], smooth layer]", what);
	int have_qkv = 0, have_gu = 0;
	for (int i = 0; i < n->n; i++) {
		const qc_ynode *m = n->kids[i];
		if (m->type != QC_Y_SEQ || m->n != 2 || m->kids[0]->type != QC_Y_SEQ ||
		    m->kids[1]->type != QC_Y_SCALAR)
			return qc_ydoc_err(d, m, "%s: expected [[balance layers], smooth layer]", what);
		const char *smooth = m->kids[1]->text;
		char bal[256] = "";
		for (int j = 0; j < m->kids[0]->n; j++) {
			const qc_ynode *b = m->kids[0]->kids[j];
			if (b->type != QC_Y_SCALAR)
				return qc_ydoc_err(d, b, "%s: a balance layer is a name", what);
			const char *names[] = { "q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "o_proj",
			                        "down_proj" };
			int hit = 0;
			for (size_t z = 0; z < sizeof names / sizeof names[0]; z++)
				if (strstr(b->text, names[z]) && strlen(bal) + 12 < sizeof bal)
					sprintf(bal + strlen(bal), "%s%s", *bal ? " " : "", names[z]), hit = 1;
			if (!hit)
				return qc_ydoc_err(d, b, "%s: balancing '%s' has no equivalent in qtoolkit", what, b->text);
		}
		if (strstr(smooth, "input_layernorm") && !strcmp(bal, "q_proj k_proj v_proj"))
			have_qkv = 1;
		else if (strstr(smooth, "post_attention_layernorm") && !strcmp(bal, "gate_proj up_proj"))
			have_gu = 1;
		else if (strstr(smooth, "v_proj") && !strcmp(bal, "o_proj"))
			QC_TRY(set_opt(d, m, &s->call, "smooth-vo", "true"));
		else if (strstr(smooth, "up_proj") && !strcmp(bal, "down_proj"))
			QC_TRY(set_opt(d, m, &s->call, "smooth-ud", "true"));
		else
			return qc_ydoc_err(d, m, "%s: smoothing '%s' into %s has no equivalent in qtoolkit", what,
			                   smooth, *bal ? bal : "nothing");
	}
	if (!have_qkv || !have_gu)
		return qc_ydoc_err(d, n, "%s: qsmooth always smooths input_layernorm into q/k/v and "
		                   "post_attention_layernorm into gate/up; mappings without %s have no "
		                   "equivalent", what, !have_qkv ? "the first" : "the second");
	return 0;
}

/* AWQ's mappings: only llm-compressor's default ones for Llama */
static int awq_mappings(qc_ydoc *d, const qc_ynode *n)
{
	const char *what = "AWQModifier: mappings";
	static const char *const want[4][2] = {
		{ "input_layernorm", "q_proj k_proj v_proj" }, { "v_proj", "o_proj" },
		{ "post_attention_layernorm", "gate_proj up_proj" }, { "up_proj", "down_proj" },
	};
	if (!n || qc_ynode_null(n))
		return 0;
	if (n->type != QC_Y_SEQ)
		return qc_ydoc_err(d, n, "%s: expected a list of {smooth_layer, balance_layers}", what);
	int seen[4] = { 0 };
	for (int i = 0; i < n->n; i++) {
		const qc_ynode *m = n->kids[i], *sm = qc_ynode_get(m, "smooth_layer"),
		               *bl = qc_ynode_get(m, "balance_layers");
		if (m->type != QC_Y_MAP || !sm || sm->type != QC_Y_SCALAR || !bl || bl->type != QC_Y_SEQ ||
		    m->n != 2)
			return qc_ydoc_err(d, m, "%s: expected {smooth_layer: NAME, balance_layers: [NAMES]}", what);
		char bal[128] = "";
		for (int j = 0; j < bl->n; j++) {
			const char *t = bl->kids[j]->text ? bl->kids[j]->text : "";
			const char *names[] = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
			                        "down_proj" };
			for (size_t z = 0; z < sizeof names / sizeof names[0]; z++)
				if (strstr(t, names[z]) && strlen(bal) + 12 < sizeof bal)
					sprintf(bal + strlen(bal), "%s%s", *bal ? " " : "", names[z]);
		}
		int hit = 0;
		for (int w = 0; w < 4; w++)
			if (strstr(sm->text, want[w][0]) && !strcmp(bal, want[w][1]) &&
			    !(w == 3 && strstr(sm->text, "post_attention")))
				seen[w] = 1, hit = 1;
		if (!hit)
			return qc_ydoc_err(d, m, "%s: smoothing '%s' into %s has no equivalent in qtoolkit (qawq "
			                   "uses llm-compressor's default Llama mappings)", what, sm->text,
			                   *bal ? bal : "nothing");
	}
	for (int w = 0; w < 4; w++)
		if (!seen[w])
			return qc_ydoc_err(d, n, "%s: without %s -> %s they have no equivalent in qtoolkit (qawq "
			                   "uses llm-compressor's default Llama mappings)", what, want[w][0], want[w][1]);
	return 0;
}

/* The modifier's own keys (qc_lc_key table); a key that is neither its
 * own nor a quantization key has no equivalent. */
static int lc_keys(qc_ydoc *d, const qc_ynode *args, const qc_lc_mod *m, qc_recipe__step *s,
                   lcq *q, int merged_into_awq)
{
	if (!args || qc_ynode_null(args))
		return 0;
	if (args->type != QC_Y_MAP)
		return qc_ydoc_err(d, args, "%s: expected a mapping of arguments", m->name);
	for (int i = 0; i < args->n; i++) {
		const qc_ynode *k = args->kids[2 * i], *v = args->kids[2 * i + 1];
		if (m->quant_keys) {
			int took = lc_quant_key(d, k, v, m->name, q);
			if (took < 0)
				return took;
			if (took)
				continue;
		}
		const qc_lc_key *lk = NULL;
		for (const qc_lc_key *x = m->keys; x && x->key; x++)
			if (strcmp(x->key, k->text) == 0)
				lk = x;
		if (!lk)
			return qc_ydoc_err(d, k, "%s: '%s' has no equivalent in qtoolkit", m->name, k->text);
		char ctx[128], buf[64];
		snprintf(ctx, sizeof ctx, "%s: %s", m->name, k->text);
		const char *w;
		switch (lk->how) {
		case QC_LC_NOEFFECT:
			break;
		case QC_LC_ONLY:
			QC_TRY(lc_word(d, v, ctx, &w));
			if (!map_value(lk->map, w, buf, sizeof buf))
				return qc_ydoc_err(d, v, "%s: '%s' has no equivalent in qtoolkit (only %.*s)", ctx, w,
				                   (int)strcspn(lk->map, "="), lk->map);
			break;
		case QC_LC_OPT:
			QC_TRY(lc_word(d, v, ctx, &w));
			if (lk->map) {
				const char *to = map_value(lk->map, w, buf, sizeof buf);
				if (!to)
					return qc_ydoc_err(d, v, "%s: '%s' has no equivalent in qtoolkit", ctx, w);
				w = to;
			} else if (strcmp(w, "null") == 0) {
				break;
			}
			if (merged_into_awq)
				return qc_ydoc_err(d, k, "%s: after AWQModifier, GPTQ runs as qawq --then gptq with "
				                   "qgptq's defaults; '%s' has no equivalent there", m->name, k->text);
			QC_TRY(set_opt_as(d, v, &s->call, lk->to, w, ctx));
			break;
		case QC_LC_SPECIAL:
			if (strcmp(k->text, "mappings") == 0) {
				if (strcmp(m->name, "SmoothQuantModifier") == 0)
					QC_TRY(sq_mappings(d, v, s));
				else
					QC_TRY(awq_mappings(d, v));
			} else if (strcmp(k->text, "ignore") == 0) {
				lcq tmp = { 0 };
				QC_TRY(lc_ignore(d, v, m->name, &tmp));
				if (tmp.n_ignore)
					return qc_ydoc_err(d, v, "%s: leaving '%s' unsmoothed has no equivalent in "
					                   "qtoolkit (qsmooth smooths every layer)", ctx, tmp.ignore[0]);
			}
			break;
		}
	}
	return 0;
}

/* The table entry for modifier name with the scheme's family. */
static const qc_rt_tool *lc_tool(const char *name, int family, const qc_lc_mod **mod)
{
	for (const qc_rt_tool *t = qc_recipe__tools; t->name; t++)
		for (const qc_lc_mod *m = t->lc; m && m->name; m++)
			if (strcmp(m->name, name) == 0 && (m->family == 0 || family == 0 || m->family == family)) {
				*mod = m;
				return t;
			}
	return NULL;
}

static int lc_known(const char *name)
{
	for (const qc_rt_tool *t = qc_recipe__tools; t->name; t++)
		for (const qc_lc_mod *m = t->lc; m && m->name; m++)
			if (strcmp(m->name, name) == 0)
				return 1;
	return 0;
}

/* Apply a preset ("method=rtn") to a step. */
static int lc_preset_opts(qc_ydoc *d, const qc_ynode *at, qc_recipe__step *s, const char *preset)
{
	char buf[64];
	for (const char *p = preset; p && *p;) {
		const char *e = strchr(p, ' ');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		snprintf(buf, sizeof buf, "%.*s", (int)k, p);
		char *eq = strchr(buf, '=');
		if (eq) {
			*eq = 0;
			QC_TRY(set_opt(d, at, &s->call, buf, eq + 1));
		}
		p = e ? e + 1 : p + k;
	}
	return 0;
}

/* A step from the recipe's variables: threads, mem, device. */
static int lc_defaults(qc_recipe *r, qc_recipe__call *c)
{
	static const char *const vars[][2] = { { "THREADS", "threads" }, { "MEM", "mem" }, { "DEVICE", "device" } };
	for (size_t i = 0; i < 3; i++) {
		const char *v = qc_recipe__getvar(r, vars[i][0]);
		const qc_rt_opt *o = qc_recipe__opt(c->tool, vars[i][1]);
		if (!v || !*v || !o)
			continue;
		if (qc_recipe__check_value(o, v) != 0)
			return qc_seterr(QC_EINVAL, "%s: %s=%s: %s", r->file, vars[i][0], v, qc_errmsg());
		QC_TRY(qc_recipe__call_set(r, c, o, v));
	}
	return 0;
}

int qc_recipe__parse_llmc(qc_ydoc *d)
{
	qc_recipe *r = d->r;
	const qc_ynode *root = d->root, *stage = NULL, *stage_key = NULL;
	for (int i = 0; i < root->n; i++) {
		const qc_ynode *k = root->kids[2 * i];
		if (strcmp(k->text, "version") == 0)
			continue;
		if (!ends_with(k->text, "_stage"))
			return qc_ydoc_err(d, k, "'%s' has no equivalent in qtoolkit (an llm-compressor recipe "
			                   "has *_stage keys)", k->text);
		if (stage)
			return qc_ydoc_err(d, k, "a second stage ('%s') has no equivalent in qtoolkit (one stage "
			                   "of quantization modifiers)", k->text);
		stage_key = k;
		stage = root->kids[2 * i + 1];
	}
	if (!stage || stage->type != QC_Y_MAP)
		return qc_ydoc_err(d, stage ? stage : stage_key, "%s: expected a mapping of *_modifiers",
		                   stage_key->text);
	/* the variant is the stage: quant_stage -> quant */
	char vname[64];
	snprintf(vname, sizeof vname, "%.*s", (int)(strlen(stage_key->text) - 6), stage_key->text);
	for (char *p = vname; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	int ok = vname[0] != 0;
	for (char *p = vname; *p; p++)
		ok &= (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.';
	if (!ok || !((vname[0] >= 'a' && vname[0] <= 'z') || (vname[0] >= '0' && vname[0] <= '9')))
		return qc_ydoc_err(d, stage_key, "'%s': the stage names the variant, so it must be letters, "
		                   "digits, - _ . before _stage", stage_key->text);
	qc_recipe__variant *v = qc_recipe__add_variant(r, vname);
	if (!v)
		return QC_ENOMEM;
	v->line = stage_key->line;
	v->col = stage_key->col;
	/* the model and token sets come from variables */
	const char *model = qc_recipe__getvar(r, "MODEL"), *calib = qc_recipe__getvar(r, "CALIB"),
	           *eval = qc_recipe__getvar(r, "EVAL");
	if (!qc_recipe__path_ok(model))
		return qc_seterr(QC_EINVAL, "%s: MODEL='%s' is not a path make can take (letters, digits and "
		                 "_ . / - + , @ = only)", r->file, model);
	r->model_source = QC_SRC_PATH;
	r->model_path = (char *)model;
	r->model_name = (char *)model;
	r->resume = 1;
	if (*calib) {
		if (!qc_recipe__path_ok(calib))
			return qc_seterr(QC_EINVAL, "%s: CALIB='%s' is not a path make can take", r->file, calib);
		qc_recipe__tokens *t = qc_recipe__add_tokens(r, "calib");
		if (!t)
			return QC_ENOMEM;
		t->source = QC_TOK_FILE;
		t->path = (char *)calib;
	}
	if (*eval) {
		if (!qc_recipe__path_ok(eval))
			return qc_seterr(QC_EINVAL, "%s: EVAL='%s' is not a path make can take", r->file, eval);
		qc_recipe__tokens *t = qc_recipe__add_tokens(r, "eval");
		if (!t)
			return QC_ENOMEM;
		t->source = QC_TOK_FILE;
		t->path = (char *)eval;
	}
	int vi = r->n_variants - 1;
	int awq = -1, quant = 0;           /* a pending qawq step, and whether a step quantizes */
	lcq awq_q = { 0 };
	const qc_ynode *awq_key = NULL;
	for (int gi = 0; gi < stage->n; gi++) {
		const qc_ynode *gk = stage->kids[2 * gi], *group = stage->kids[2 * gi + 1];
		if (strcmp(gk->text, "run_type") == 0) {
			char *rt;
			QC_TRY(qc_ydoc_text(d, group, "run_type", &rt));
			if (rt && strcmp(rt, "oneshot") != 0)
				return qc_ydoc_err(d, group, "run_type: '%s' has no equivalent in qtoolkit (oneshot)", rt);
			continue;
		}
		if (!ends_with(gk->text, "_modifiers"))
			return qc_ydoc_err(d, gk, "%s: '%s' has no equivalent in qtoolkit (a stage has "
			                   "*_modifiers)", stage_key->text, gk->text);
		if (!group || group->type != QC_Y_MAP)
			return qc_ydoc_err(d, group ? group : gk, "%s: expected a mapping of modifiers", gk->text);
		for (int i = 0; i < group->n; i++) {
			const qc_ynode *mk = group->kids[2 * i], *args = group->kids[2 * i + 1];
			const char *name = mk->text;
			v = &r->variants[vi];
			if (!lc_known(name))
				return qc_ydoc_err(d, mk, "'%s' has no equivalent in qtoolkit (modifiers with one: "
				                   "SmoothQuantModifier, AWQModifier, GPTQModifier, QuantizationModifier)",
				                   name);
			if (args && !qc_ynode_null(args) && args->type != QC_Y_MAP)
				return qc_ydoc_err(d, args, "%s: expected a mapping of arguments", name);
			const qc_lc_mod *m;
			if (strcmp(name, "SmoothQuantModifier") == 0) {
				if (quant || awq >= 0)
					return qc_ydoc_err(d, mk, "%s after a quantizing modifier has no equivalent in "
					                   "qtoolkit (smooth first)", name);
				const qc_rt_tool *t = lc_tool(name, 0, &m);
				qc_recipe__step *s = qc_recipe__add_step(r, v, t);
				if (!s)
					return QC_ENOMEM;
				s->call.line = mk->line;
				s->call.col = mk->col;
				QC_TRY(lc_keys(d, args, m, s, NULL, 0));
				QC_TRY(lc_defaults(r, &s->call));
				if (!*calib)
					return qc_ydoc_err(d, mk, "%s needs calibration data: give CALIB=FILE (a token "
					                   "set qcalib made)", name);
				continue;
			}
			if (strcmp(name, "AWQModifier") == 0) {
				if (quant || awq >= 0)
					return qc_ydoc_err(d, mk, "%s after a quantizing modifier has no equivalent in "
					                   "qtoolkit", name);
				const qc_rt_tool *t = lc_tool(name, 0, &m);
				qc_recipe__step *s = qc_recipe__add_step(r, v, t);
				if (!s)
					return QC_ENOMEM;
				s->call.line = mk->line;
				s->call.col = mk->col;
				awq = v->n_steps - 1;
				awq_key = mk;
				QC_TRY(lc_keys(d, args, m, s, &awq_q, 0));
				QC_TRY(lc_defaults(r, &s->call));
				if (!*calib)
					return qc_ydoc_err(d, mk, "%s needs calibration data: give CALIB=FILE (a token "
					                   "set qcalib made)", name);
				continue;
			}
			/* GPTQModifier, QuantizationModifier */
			if (quant)
				return qc_ydoc_err(d, mk, "a second quantizing modifier ('%s') has no equivalent in "
				                   "qtoolkit (one scheme for every Linear)", name);
			lcq q = { 0 };
			if (awq >= 0) {
				qc_recipe__step *s = &v->steps[awq];
				const qc_rt_tool *t = lc_tool(name, 1, &m);
				qc_recipe__step tmp = { 0 };
				tmp.call.tool = t;
				QC_TRY(lc_keys(d, args, m, &tmp, &q, strcmp(name, "GPTQModifier") == 0));
				if (q.set && awq_q.set)
					return qc_ydoc_err(d, q.at, "%s: AWQModifier already has a scheme", name);
				if (!q.set && !awq_q.set)
					return qc_ydoc_err(d, mk, "%s: no scheme (scheme or config_groups)", name);
				const lcq *use = q.set ? &q : &awq_q;
				lcq merged = *use;
				merged.n_ignore = 0;
				for (int j = 0; j < awq_q.n_ignore; j++)
					merged.ignore[merged.n_ignore++] = awq_q.ignore[j];
				for (int j = 0; j < q.n_ignore && merged.n_ignore < 64; j++)
					merged.ignore[merged.n_ignore++] = q.ignore[j];
				merged.ignore_at = q.ignore_at ? q.ignore_at : awq_q.ignore_at;
				if (q.kv)
					merged.kv = 1, merged.kv_at = q.kv_at;
				if (strcmp(name, "GPTQModifier") == 0)
					QC_TRY(set_opt(d, mk, &s->call, "then", "gptq"));
				QC_TRY(apply_scheme(d, s, &merged, name, use->at ? use->at : mk));
				awq = -1;
				quant = 1;
				continue;
			}
			/* the scheme decides the tool: integer weights qgptq, FP8 qfp8 */
			lc_tool(name, 0, &m);
			qc_recipe__step probe = { 0 };
			probe.call.tool = qc_recipe__tool("qgptq");
			QC_TRY(lc_keys(d, args, m, &probe, &q, 0));
			if (!q.set)
				return qc_ydoc_err(d, mk, "%s: no scheme (scheme or config_groups)", name);
			const qc_rt_tool *t = lc_tool(name, q.fp ? 2 : 1, &m);
			if (!t)
				return qc_ydoc_err(d, q.at, "%s with %s weights has no equivalent in qtoolkit", name,
				                   q.fp ? "FP8" : "integer");
			qc_recipe__step *s = qc_recipe__add_step(r, v, t);
			if (!s)
				return QC_ENOMEM;
			s->call.line = mk->line;
			s->call.col = mk->col;
			/* the modifier's own keys again, now onto the real step */
			lcq q2 = { 0 };
			QC_TRY(lc_keys(d, args, m, s, &q2, 0));
			QC_TRY(lc_preset_opts(d, mk, s, m->preset));
			QC_TRY(apply_scheme(d, s, &q2, name, q2.at ? q2.at : mk));
			QC_TRY(lc_defaults(r, &s->call));
			int need = t->need_calib && qc_recipe__conds(&s->call, t->need_calib);
			if (need && !*calib)
				return qc_ydoc_err(d, mk, "%s needs calibration data: give CALIB=FILE (a token set "
				                   "qcalib made)", name);
			if (t->calib == QC_RT_CALIB_DEFAULT && !*calib)
				s->calib = "none";
			quant = 1;
		}
	}
	v = &r->variants[vi];
	if (awq >= 0) {
		if (!awq_q.set)
			return qc_ydoc_err(d, awq_key, "AWQModifier: no scheme (its own scheme or config_groups, or "
			                   "a QuantizationModifier after it)");
		QC_TRY(apply_scheme(d, &v->steps[awq], &awq_q, "AWQModifier", awq_q.at));
		quant = 1;
	}
	if (!quant)
		return qc_ydoc_err(d, stage_key, "%s: no modifier that quantizes (GPTQModifier, "
		                   "QuantizationModifier, AWQModifier)", stage_key->text);
	/* release and gates from the variables */
	const char *fmt = qc_recipe__getvar(r, "FORMAT");
	char *fl = qc_recipe__strdup(r, fmt);
	if (!fl)
		return QC_ENOMEM;
	v->formats = qc_recipe__own(r, calloc(8, sizeof *v->formats));
	if (!v->formats)
		return QC_ENOMEM;
	for (char *save = NULL, *f = strtok_r(fl, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
		if (!qc_recipe__word_in(f, "compressed-tensors gptq awq") || v->n_formats == 7)
			return qc_seterr(QC_EINVAL, "%s: FORMAT: '%s' is not one of: compressed-tensors gptq awq",
			                 r->file, f);
		v->formats[v->n_formats++] = f;
	}
	static const char *const gates[][2] = { { "MAX_PPL_RATIO", "max-ppl-ratio" }, { "MAX_KL", "max-kl" },
	                                        { "MIN_TOP1", "min-top1" } };
	for (size_t i = 0; i < 3; i++) {
		const char *g = qc_recipe__getvar(r, gates[i][0]);
		if (!*g)
			continue;
		const qc_rt_opt *o = qc_recipe__opt(v->verify.tool, gates[i][1]);
		if (qc_recipe__check_value(o, g) != 0)
			return qc_seterr(QC_EINVAL, "%s: %s=%s: %s", r->file, gates[i][0], g, qc_errmsg());
		QC_TRY(qc_recipe__call_set(r, &v->verify, o, g));
	}
	QC_TRY(lc_defaults(r, &v->pack));
	return lc_defaults(r, &v->verify);
}
