/* qc_recipe.c - the recipe format (man/qrecipe.5): variables, the model,
 * token sets, variants; the checks every recipe shares; the small
 * accessors of qc_recipe.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_vec.h"
#include "qc_recipe_int.h"

/* ------------------------------------------------------------ memory */

void *qc_recipe__own(qc_recipe *r, void *p)
{
	if (!p) {
		qc_seterr(QC_ENOMEM, "out of memory");
		return NULL;
	}
	if (qc_grow((void **)&r->owned, &r->cap_owned, r->n_owned + 1, sizeof *r->owned) != 0) {
		free(p);
		return NULL;
	}
	r->owned[r->n_owned++] = p;
	return p;
}

char *qc_recipe__strdup(qc_recipe *r, const char *s)
{
	return qc_recipe__own(r, s ? strdup(s) : NULL);
}

char *qc_recipe__printf(qc_recipe *r, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return qc_recipe__own(r, n < 0 ? NULL : s);
}

void qc_recipe_free(qc_recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_owned; i++)
		free(r->owned[i]);
	free(r->owned);
	free(r->tokens);
	free(r->variants);
	free(r->vars);
	free(r);
}

/* ------------------------------------------------------------ calls and values */

int qc_recipe__call_set(qc_recipe *r, qc_recipe__call *c, const qc_rt_opt *o, const char *v)
{
	char *copy = qc_recipe__strdup(r, v);
	if (!copy)
		return QC_ENOMEM;
	for (int i = 0; i < c->n_vals; i++) {
		qc_recipe__val *x = &c->vals[i];
		if (x->opt != o)
			continue;
		if (o->type != QC_RT_LIST) {
			x->v[0] = copy;
			return 0;
		}
		char **nv = qc_recipe__own(r, malloc(((size_t)x->n + 1) * sizeof *nv));
		if (!nv)
			return QC_ENOMEM;
		memcpy(nv, x->v, (size_t)x->n * sizeof *nv);
		nv[x->n++] = copy;
		x->v = nv;
		return 0;
	}
	if (c->n_vals == QC_RECIPE__MAXOPT)
		return qc_seterr(QC_EINTERNAL, "too many options for %s", c->tool ? c->tool->name : "a tool");
	qc_recipe__val *x = &c->vals[c->n_vals++];
	x->opt = o;
	x->v = qc_recipe__own(r, malloc(sizeof *x->v));
	if (!x->v)
		return QC_ENOMEM;
	x->v[0] = copy;
	x->n = 1;
	return 0;
}

const char *qc_recipe__call_get(const qc_recipe__call *c, const char *key)
{
	for (int i = 0; i < c->n_vals; i++)
		if (strcmp(c->vals[i].opt->key, key) == 0)
			return c->vals[i].v[0];
	return NULL;
}

int qc_recipe__conds(const qc_recipe__call *c, const char *conds)
{
	char buf[128];
	for (const char *p = conds; p && *p;) {
		const char *e = strchr(p, ' ');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		if (k >= sizeof buf)
			k = sizeof buf - 1;
		memcpy(buf, p, k);
		buf[k] = 0;
		p = e ? e + 1 : p + k;
		if (strcmp(buf, "*") == 0)
			return 1;
		int neg = buf[0] == '!';
		char *key = buf + neg, *eq = strchr(key, '=');
		if (eq)
			*eq = 0;
		const char *v = qc_recipe__call_get(c, key);
		int holds = eq ? v && strcmp(v, eq + 1) == 0 : v != NULL;
		if (holds != neg)
			return 1;
	}
	return 0;
}

static const char *size_units[] = { "", "B", "K", "KB", "kB", "KiB", "M", "MB", "MiB", "G", "GB",
                                    "GiB", "T", "TB", "TiB", NULL };

int qc_recipe__check_value(const qc_rt_opt *o, const char *t)
{
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return qc_seterr(QC_EFORMAT, "'%s' holds a control character (a newline?)", t);
	if (o->words && qc_recipe__word_in(t, o->words))
		return 0;
	char *end;
	switch (o->type) {
	case QC_RT_FLAG: {
		int b;
		if (!qc_recipe__bool(t, &b))
			return qc_seterr(QC_EFORMAT, "'%s' is not true or false", t);
		return 0;
	}
	case QC_RT_INT: {
		errno = 0;
		long long v = strtoll(t, &end, 10);
		if (errno || end == t || *end)
			return qc_seterr(QC_EFORMAT, "'%s' is not a whole number%s%s%s", t,
			                 o->words ? " (or " : "", o->words ? o->words : "", o->words ? ")" : "");
		if ((double)v < o->min || (double)v > o->max)
			return qc_seterr(QC_EFORMAT, "%s is out of range (%.0f to %.0f)", t, o->min, o->max);
		return 0;
	}
	case QC_RT_FLOAT: {
		errno = 0;
		double v = strtod(t, &end);
		if (errno || end == t || *end || !isfinite(v))
			return qc_seterr(QC_EFORMAT, "'%s' is not a number%s%s%s", t,
			                 o->words ? " (or " : "", o->words ? o->words : "", o->words ? ")" : "");
		if (v < o->min || v > o->max)
			return qc_seterr(QC_EFORMAT, "%s is out of range (%g to %g)", t, o->min, o->max);
		return 0;
	}
	case QC_RT_WORD:
		return qc_seterr(QC_EFORMAT, "'%s' is not one of: %s", t, o->words);
	case QC_RT_SIZE: {
		errno = 0;
		double v = strtod(t, &end);
		if (errno == 0 && end != t && isfinite(v) && v >= 0)
			for (int i = 0; size_units[i]; i++)
				if (strcmp(end, size_units[i]) == 0)
					return 0;
		return qc_seterr(QC_EFORMAT, "'%s' is not a size (e.g. 16GB, 500MB, 2GiB, 4096)", t);
	}
	case QC_RT_TEXT:
	case QC_RT_LIST:
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------ arrays */

qc_recipe__tokens *qc_recipe__find_tokens(const qc_recipe *r, const char *name)
{
	for (int i = 0; i < r->n_tokens; i++)
		if (strcmp(r->tokens[i].name, name) == 0)
			return &r->tokens[i];
	return NULL;
}

qc_recipe__tokens *qc_recipe__add_tokens(qc_recipe *r, const char *name)
{
	size_t cap = (size_t)r->cap_tokens;
	if (qc_grow((void **)&r->tokens, &cap, (size_t)r->n_tokens + 1, sizeof *r->tokens) != 0)
		return NULL;
	r->cap_tokens = (int)cap;
	qc_recipe__tokens *t = &r->tokens[r->n_tokens];
	memset(t, 0, sizeof *t);
	if (!(t->name = qc_recipe__strdup(r, name)))
		return NULL;
	t->call.tool = qc_recipe__tool("qcalib");
	r->n_tokens++;
	return t;
}

qc_recipe__variant *qc_recipe__add_variant(qc_recipe *r, const char *name)
{
	size_t cap = (size_t)r->cap_variants;
	if (qc_grow((void **)&r->variants, &cap, (size_t)r->n_variants + 1, sizeof *r->variants) != 0)
		return NULL;
	r->cap_variants = (int)cap;
	qc_recipe__variant *v = &r->variants[r->n_variants];
	memset(v, 0, sizeof *v);
	if (!(v->name = qc_recipe__strdup(r, name)))
		return NULL;
	v->pack.tool = qc_recipe__tool("qpack");
	v->verify.tool = qc_recipe__tool("qverify");
	r->n_variants++;
	return v;
}

qc_recipe__step *qc_recipe__add_step(qc_recipe *r, qc_recipe__variant *v, const qc_rt_tool *t)
{
	qc_recipe__step *s = qc_recipe__own(r, calloc((size_t)v->n_steps + 1, sizeof *s));
	if (!s)
		return NULL;
	if (v->n_steps)
		memcpy(s, v->steps, (size_t)v->n_steps * sizeof *s);
	v->steps = s;
	s = &v->steps[v->n_steps++];
	s->call.tool = t;
	return s;
}

static int add_var(qc_recipe *r, const char *name, const char *value)
{
	size_t cap = (size_t)r->cap_vars;
	if (qc_grow((void **)&r->vars, &cap, (size_t)r->n_vars + 1, sizeof *r->vars) != 0)
		return QC_ENOMEM;
	r->cap_vars = (int)cap;
	qc_recipe__var *v = &r->vars[r->n_vars];
	if (!(v->name = qc_recipe__strdup(r, name)) || !(v->value = qc_recipe__strdup(r, value)))
		return QC_ENOMEM;
	v->set = 0;
	r->n_vars++;
	return 0;
}

/* ------------------------------------------------------------ names and paths */

static int name_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 64 || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
	                                    (*s >= '0' && *s <= '9')))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return 1;
}

static int varname_ok(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i && c >= '0' && c <= '9')))
			return 0;
	}
	return 1;
}

/* a path make can take as a target or prerequisite, and a shell as a word */
int qc_recipe__path_ok(const char *s)
{
	if (!s || !*s || *s == '-')     /* "-" is a stream, "-x" an option */
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("_./-+,@=", *s)))
			return 0;
	return 1;
}

static int check_path(qc_ydoc *d, const qc_ynode *n, const char *what, const char *p)
{
	if (!qc_recipe__path_ok(p))
		return qc_ydoc_err(d, n, "%s: '%s' is not a path make can take (letters, digits and "
		                   "_ . / - + , @ = only, not first -)", what, p);
	return 0;
}

/* ------------------------------------------------------------ generic option maps */

/* Is key one of the space-separated words in skip? */
static int skipped(const char *key, const char *skip)
{
	return skip && qc_recipe__word_in(key, skip);
}

static int unknown_key(qc_ydoc *d, const qc_ynode *k, const char *what, const qc_rt_tool *t,
                       const char *extra)
{
	char *keys = t ? qc_recipe_tool_keys(t->name) : NULL;
	if (keys && extra && qc_recipe__word_in(extra, keys))
		extra = NULL;   /* calib: already among the tool's keys */
	int rc = qc_ydoc_err(d, k, "%s: unknown key '%s' (%s takes: %s%s%s)", what, k->text,
	                     t ? t->name : what, keys ? keys : "", keys && extra && *extra ? " " : "",
	                     extra ? extra : "");
	free(keys);
	return rc;
}

/* One option's value from node v into c. */
static int parse_value(qc_ydoc *d, const char *what, const qc_ynode *k, const qc_ynode *v,
                       const qc_rt_opt *o, qc_recipe__call *c)
{
	qc_recipe *r = d->r;
	char ctx[160];
	snprintf(ctx, sizeof ctx, "%s: %s", what, o->key);
	if (o->type == QC_RT_LIST && v && v->type == QC_Y_SEQ) {
		for (int i = 0; i < v->n; i++) {
			char *t;
			QC_TRY(qc_ydoc_text(d, v->kids[i], ctx, &t));
			if (!t)
				continue;
			if (qc_recipe__check_value(o, t) != 0)
				return qc_ydoc_err(d, v->kids[i], "%s: %s", ctx, qc_errmsg());
			QC_TRY(qc_recipe__call_set(r, c, o, t));
		}
		return 0;
	}
	char *t;
	QC_TRY(qc_ydoc_text(d, v, ctx, &t));
	if (!t)
		return 0;
	const qc_ynode *at = v ? v : k;
	if (qc_recipe__check_value(o, t) != 0)
		return qc_ydoc_err(d, at, "%s: %s", ctx, qc_errmsg());
	if (o->type == QC_RT_FLAG) {
		int b = 0;
		qc_recipe__bool(t, &b);
		return b ? qc_recipe__call_set(r, c, o, "true") : 0;
	}
	return qc_recipe__call_set(r, c, o, t);
}

/* The keys of mapping n as options of c->tool; keys in skip are the
 * caller's. n may be null (no options). */
static int parse_opts(qc_ydoc *d, const qc_ynode *n, const char *what, qc_recipe__call *c,
                      const char *skip)
{
	if (!n || qc_ynode_null(n))
		return 0;
	if (n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n, "%s: expected a mapping of options", what);
	if (!c->line) {
		c->line = n->line;
		c->col = n->col;
	}
	for (int i = 0; i < n->n; i++) {
		const qc_ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (skipped(k->text, skip))
			continue;
		const qc_rt_opt *o = qc_recipe__opt(c->tool, k->text);
		if (!o)
			return unknown_key(d, k, what, c->tool, skip);
		QC_TRY(parse_value(d, what, k, v, o, c));
	}
	return 0;
}

/* Refuse keys of map n not in the space-separated list keys. */
static int only_keys(qc_ydoc *d, const qc_ynode *n, const char *what, const char *keys)
{
	if (!n)
		return 0;
	if (n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n, "%s: expected a mapping", what);
	for (int i = 0; i < n->n; i++)
		if (!qc_recipe__word_in(n->kids[2 * i]->text, keys))
			return qc_ydoc_err(d, n->kids[2 * i], "%s: unknown key '%s' (%s takes: %s)", what,
			                   n->kids[2 * i]->text, what, keys);
	return 0;
}

/* A scalar that must be a word of words (or absent: *out NULL). */
static int get_word(qc_ydoc *d, const qc_ynode *map, const char *key, const char *what,
                    const char *words, char **out)
{
	const qc_ynode *v = qc_ynode_get(map, key);
	char ctx[128];
	snprintf(ctx, sizeof ctx, "%s: %s", what, key);
	QC_TRY(qc_ydoc_text(d, v, ctx, out));
	if (*out && !qc_recipe__word_in(*out, words))
		return qc_ydoc_err(d, v, "%s: '%s' is not one of: %s", ctx, *out, words);
	return 0;
}

static int get_bool(qc_ydoc *d, const qc_ynode *map, const char *key, const char *what, int *b)
{
	const qc_ynode *v = qc_ynode_get(map, key);
	char ctx[128], *t;
	snprintf(ctx, sizeof ctx, "%s: %s", what, key);
	QC_TRY(qc_ydoc_text(d, v, ctx, &t));
	if (t && !qc_recipe__bool(t, b))
		return qc_ydoc_err(d, v, "%s: '%s' is not true or false", ctx, t);
	return 0;
}

static int get_text(qc_ydoc *d, const qc_ynode *map, const char *key, const char *what, char **out)
{
	char ctx[128];
	snprintf(ctx, sizeof ctx, "%s: %s", what, key);
	QC_TRY(qc_ydoc_text(d, qc_ynode_get(map, key), ctx, out));
	if (*out)
		for (const unsigned char *p = (const unsigned char *)*out; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				return qc_ydoc_err(d, qc_ynode_get(map, key), "%s: holds a control character", ctx);
	return 0;
}

/* ------------------------------------------------------------ variables */

/* Declare the variables: each takes its override, or its default expanded
 * with the variables declared before it. */
static int parse_vars(qc_ydoc *d, const qc_ynode *n)
{
	qc_recipe *r = d->r;
	if (!n || qc_ynode_null(n))
		return 0;
	if (n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n, "vars: expected a mapping of NAME: default");
	for (int i = 0; i < n->n; i++) {
		const qc_ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (!varname_ok(k->text, strlen(k->text)))
			return qc_ydoc_err(d, k, "vars: '%s' is not a variable name (letters, digits, _)", k->text);
		for (int j = 0; j < r->n_vars; j++)
			if (strcmp(r->vars[j].name, k->text) == 0)
				return qc_ydoc_err(d, k, "vars: '%s' is a built-in variable (RECIPE_DIR, GATES)",
				                   k->text);
		const char *val = NULL;
		int set = 0;
		for (int j = 0; j < r->n_overrides; j++) {
			const char *o = r->overrides[j], *eq = strchr(o, '=');
			if ((size_t)(eq - o) == strlen(k->text) && memcmp(o, k->text, (size_t)(eq - o)) == 0)
				val = eq + 1, set = 1;
		}
		char *def = NULL;
		if (!set) {
			char ctx[96];
			snprintf(ctx, sizeof ctx, "vars: %s", k->text);
			QC_TRY(qc_ydoc_text(d, v, ctx, &def));
			val = def ? def : "";
		}
		QC_TRY(add_var(r, k->text, val));
		r->vars[r->n_vars - 1].set = set;
	}
	return 0;
}

/* Every override names a declared variable. */
static int check_overrides(qc_recipe *r)
{
	for (int j = 0; j < r->n_overrides; j++) {
		const char *o = r->overrides[j], *eq = strchr(o, '=');
		int found = 0;
		for (int i = 0; i < r->n_vars; i++)
			if (strlen(r->vars[i].name) == (size_t)(eq - o) &&
			    memcmp(r->vars[i].name, o, (size_t)(eq - o)) == 0 && strcmp(r->vars[i].name, "RECIPE_DIR"))
				found = 1;
		if (!found) {
			char list[512] = "";
			size_t len = 0;
			for (int i = 0; i < r->n_vars; i++)
				if (strcmp(r->vars[i].name, "RECIPE_DIR") && len + strlen(r->vars[i].name) + 2 < sizeof list)
					len += (size_t)sprintf(list + len, "%s%s", len ? " " : "", r->vars[i].name);
			return qc_seterr(QC_EINVAL, "%s: unknown variable '%.*s' (the recipe's variables: %s)",
			                 r->file, (int)(eq - o), o, len ? list : "none");
		}
	}
	return 0;
}

int qc_recipe__declare(qc_recipe *r, const char *name, const char *def)
{
	const char *val = def;
	int set = 0;
	for (int j = 0; j < r->n_overrides; j++) {
		const char *o = r->overrides[j], *eq = strchr(o, '=');
		if ((size_t)(eq - o) == strlen(name) && memcmp(o, name, (size_t)(eq - o)) == 0)
			val = eq + 1, set = 1;
	}
	QC_TRY(add_var(r, name, val));
	r->vars[r->n_vars - 1].set = set;
	return 0;
}

/* ------------------------------------------------------------ the native format */

static const char *const top_keys =
	"qrecipe name vars model calib eval tokens defaults jobs release gates variants";

static int parse_model(qc_ydoc *d, const qc_ynode *n)
{
	qc_recipe *r = d->r;
	if (!n)
		return qc_ydoc_err(d, d->root, "no model: say which checkpoint the recipe quantizes "
		                   "(model: {path: DIR} or model: {source: synth, synth: {...}})");
	QC_TRY(only_keys(d, n, "model", "name source path synth"));
	char *src, *path;
	QC_TRY(get_word(d, n, "source", "model", "path synth", &src));
	QC_TRY(get_text(d, n, "name", "model", &r->model_name));
	QC_TRY(get_text(d, n, "path", "model", &path));
	r->model_source = src && strcmp(src, "synth") == 0 ? QC_SRC_SYNTH : QC_SRC_PATH;
	r->synth.tool = qc_recipe__tool("qsynth");
	QC_TRY(parse_opts(d, qc_ynode_get(n, "synth"), "model: synth", &r->synth, NULL));
	if (r->model_source == QC_SRC_PATH) {
		if (!path)
			return qc_ydoc_err(d, qc_ynode_get(n, "path") ? qc_ynode_get(n, "path") : n,
			                   "model: no path (the checkpoint directory; or source: synth)");
		QC_TRY(check_path(d, qc_ynode_get(n, "path"), "model: path", path));
		r->model_path = path;
	} else {
		r->model_path = "work/model";
	}
	if (!r->model_name)
		r->model_name = r->model_source == QC_SRC_PATH ? r->model_path : "a qsynth model";
	return 0;
}

static int parse_tokens(qc_ydoc *d, const qc_ynode *k, const qc_ynode *n, const char *name)
{
	qc_recipe *r = d->r;
	char what[96];
	snprintf(what, sizeof what, "%s", name);
	if (!name_ok(name))
		return qc_ydoc_err(d, k, "tokens: '%s' is not a name (letters, digits, - _ .)", name);
	if (qc_recipe__find_tokens(r, name))
		return qc_ydoc_err(d, k, "tokens: '%s' is already a token set", name);
	if (!n || n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n ? n : k, "%s: expected a mapping (source, files or path, and qcalib's "
		                   "options)", what);
	qc_recipe__tokens *t = qc_recipe__add_tokens(r, name);
	if (!t)
		return QC_ENOMEM;
	t->call.line = n->line;
	t->call.col = n->col;
	char *src, *path;
	QC_TRY(get_word(d, n, "source", what, "text random file", &src));
	QC_TRY(get_text(d, n, "path", what, &path));
	QC_TRY(parse_opts(d, n, what, &t->call, "source path files"));
	const qc_ynode *files = qc_ynode_get(n, "files");
	t->source = !src ? (path ? QC_TOK_FILE : QC_TOK_TEXT)
	            : strcmp(src, "random") == 0 ? QC_TOK_RANDOM : strcmp(src, "file") == 0 ? QC_TOK_FILE
	            : QC_TOK_TEXT;
	if (files && !qc_ynode_null(files)) {
		const qc_ynode *one[1] = { files };
		const qc_ynode *const *items = files->type == QC_Y_SEQ ? (const qc_ynode *const *)files->kids : one;
		int n_items = files->type == QC_Y_SEQ ? files->n : 1;
		t->files = qc_recipe__own(r, calloc((size_t)n_items + 1, sizeof *t->files));
		if (!t->files)
			return QC_ENOMEM;
		for (int i = 0; i < n_items; i++) {
			char ctx[128], *f;
			snprintf(ctx, sizeof ctx, "%s: files", what);
			QC_TRY(qc_ydoc_text(d, items[i], ctx, &f));
			if (!f)
				continue;
			if (t->source == QC_TOK_TEXT)
				QC_TRY(check_path(d, items[i], ctx, f));
			t->files[t->n_files++] = f;
		}
	}
	switch (t->source) {
	case QC_TOK_TEXT:
		if (!t->n_files)
			return qc_ydoc_err(d, files ? files : n, "%s: no files to read (source: text needs files; "
			                   "or source: random, or source: file with a path)", what);
		t->path = qc_recipe__printf(r, "work/%s.st", name);
		break;
	case QC_TOK_RANDOM:
		t->path = qc_recipe__printf(r, "work/%s.st", name);
		break;
	case QC_TOK_FILE:
		if (!path)
			return qc_ydoc_err(d, n, "%s: source: file needs a path (a token set qcalib made)", what);
		QC_TRY(check_path(d, qc_ynode_get(n, "path"), "path", path));
		t->path = path;
		break;
	}
	return t->path ? 0 : QC_ENOMEM;
}

static int parse_release(qc_ydoc *d, const qc_ynode *n, qc_recipe__variant *v, const char *what)
{
	qc_recipe *r = d->r;
	const qc_ynode *formats = n;
	if (n && n->type == QC_Y_MAP) {
		formats = qc_ynode_get(n, "formats");
		QC_TRY(parse_opts(d, n, what, &v->pack, "formats"));
		if (!formats)
			return qc_ydoc_err(d, n, "%s: no formats (compressed-tensors, gptq, awq)", what);
	}
	if (!formats || qc_ynode_null(formats))
		return 0;
	const qc_ynode *one[1] = { formats };
	const qc_ynode *const *items = formats->type == QC_Y_SEQ ? (const qc_ynode *const *)formats->kids : one;
	int k = formats->type == QC_Y_SEQ ? formats->n : 1;
	v->formats = qc_recipe__own(r, calloc((size_t)k + 1, sizeof *v->formats));
	if (!v->formats)
		return QC_ENOMEM;
	v->n_formats = 0;
	for (int i = 0; i < k; i++) {
		char *f;
		QC_TRY(qc_ydoc_text(d, items[i], what, &f));
		if (!f)
			continue;
		if (!qc_recipe__word_in(f, "compressed-tensors gptq awq"))
			return qc_ydoc_err(d, items[i], "%s: '%s' is not one of: compressed-tensors gptq awq",
			                   what, f);
		for (int j = 0; j < v->n_formats; j++)
			if (strcmp(v->formats[j], f) == 0)
				return qc_ydoc_err(d, items[i], "%s: '%s' is listed twice", what, f);
		v->formats[v->n_formats++] = f;
	}
	return 0;
}

static int parse_gates(qc_ydoc *d, const qc_ynode *n, qc_recipe__variant *v, const char *what)
{
	if (!n || qc_ynode_null(n))
		return 0;
	QC_TRY(parse_opts(d, n, what, &v->verify, "tokens"));
	char *tok;
	QC_TRY(qc_ydoc_text(d, qc_ynode_get(n, "tokens"), "gates: tokens", &tok));
	if (tok)
		v->eval = strcmp(tok, "none") == 0 ? (char *)"none" : tok;
	v->verify.line = n->line;
	v->verify.col = n->col;
	return 0;
}

static int parse_step(qc_ydoc *d, const qc_ynode *n, qc_recipe__variant *v, const char *vname)
{
	qc_recipe *r = d->r;
	char what[160];
	const qc_ynode *tk = n, *opts = NULL;
	int pipe = 0;
	if (n->type == QC_Y_MAP) {
		tk = NULL;
		for (int i = 0; i < n->n; i++) {
			const char *key = n->kids[2 * i]->text;
			if (strcmp(key, "pipe") == 0)
				continue;
			if (tk)
				return qc_ydoc_err(d, n->kids[2 * i], "%s: a step is one tool ('%s' and '%s'); "
				                   "make each a step of its own", vname, tk->text, key);
			tk = n->kids[2 * i];
			opts = n->kids[2 * i + 1];
		}
		snprintf(what, sizeof what, "%s", vname);
		QC_TRY(get_bool(d, n, "pipe", what, &pipe));
		if (!tk)
			return qc_ydoc_err(d, n, "%s: a step names its tool (%s)", vname, qc_recipe_step_tools());
	} else if (n->type != QC_Y_SCALAR) {
		return qc_ydoc_err(d, n, "%s: a step is a tool name or a mapping {TOOL: {options}}", vname);
	}
	const qc_rt_tool *t = qc_recipe__tool(tk->text);
	if (!t || (t->role != QC_RT_STEP_QUANT && t->role != QC_RT_STEP_DENSE))
		return qc_ydoc_err(d, tk, "%s: unknown step '%s' (steps: %s)", vname, tk->text,
		                   qc_recipe_step_tools());
	qc_recipe__step *s = qc_recipe__add_step(r, v, t);
	if (!s)
		return QC_ENOMEM;
	s->pipe = pipe;
	s->call.line = tk->line;
	s->call.col = tk->col;
	snprintf(what, sizeof what, "%s: %s", vname, t->name);
	QC_TRY(parse_opts(d, opts, what, &s->call, t->calib != QC_RT_CALIB_NONE ? "calib" : NULL));
	char *calib;
	QC_TRY(qc_ydoc_text(d, qc_ynode_get(opts, "calib"), "calib", &calib));
	if (calib && !name_ok(calib))
		return qc_ydoc_err(d, qc_ynode_get(opts, "calib"), "%s: calib: '%s' is not a token set name",
		                   what, calib);
	s->calib = calib;
	return 0;
}

static int parse_variant(qc_ydoc *d, const qc_ynode *k, const qc_ynode *n)
{
	qc_recipe *r = d->r;
	const char *name = k->text;
	if (!name_ok(name) || qc_recipe__word_in(name, "all work release FORCE"))
		return qc_ydoc_err(d, k, "variants: '%s' is not a variant name (letters, digits, - _ .; "
		                   "not all, work, release)", name);
	for (int i = 0; i < r->n_variants; i++)
		if (strcmp(r->variants[i].name, name) == 0)
			return qc_ydoc_err(d, k, "variants: '%s' is given twice", name);
	if (!n || n->type != QC_Y_MAP)
		return qc_ydoc_err(d, n && !qc_ynode_null(n) ? n : k, "%s: expected a mapping (steps, release, gates)",
		                   name);
	QC_TRY(only_keys(d, n, name, "steps release gates"));
	qc_recipe__variant *v = qc_recipe__add_variant(r, name);
	if (!v)
		return QC_ENOMEM;
	v->line = k->line;
	v->col = k->col;
	int vi = r->n_variants - 1;
	const qc_ynode *steps = qc_ynode_get(n, "steps");
	if (!steps || qc_ynode_null(steps))
		return qc_ydoc_err(d, k, "%s: no steps", name);
	if (steps->type != QC_Y_SEQ)
		return qc_ydoc_err(d, steps, "%s: steps: expected a list of steps", name);
	for (int i = 0; i < steps->n; i++)
		QC_TRY(parse_step(d, steps->kids[i], &r->variants[vi], name));
	char what[96];
	const qc_ynode *rel = qc_ynode_get(n, "release");
	if (!rel)
		rel = qc_ynode_get(d->root, "release");
	snprintf(what, sizeof what, "%s: release", name);
	QC_TRY(parse_release(d, rel, &r->variants[vi], what));
	const qc_ynode *g = qc_ynode_get(n, "gates");
	if (!g)
		g = qc_ynode_get(d->root, "gates");
	snprintf(what, sizeof what, "%s: gates", name);
	return parse_gates(d, g, &r->variants[vi], what);
}

/* defaults: options every call gets unless it sets them */
static int apply_defaults(qc_ydoc *d, const qc_ynode *n)
{
	qc_recipe *r = d->r;
	r->resume = 1;
	if (!n || qc_ynode_null(n))
		return 0;
	QC_TRY(only_keys(d, n, "defaults", "threads mem device progress resume"));
	QC_TRY(get_bool(d, n, "progress", "defaults", &r->progress));
	QC_TRY(get_bool(d, n, "resume", "defaults", &r->resume));
	static const qc_rt_opt defs[] = {
		{ "threads", "", QC_RT_INT, NULL, 1, 1024 },
		{ "mem", "", QC_RT_SIZE, NULL, 0, 0 },
		{ "device", "", QC_RT_WORD, "cpu cuda", 0, 0 },
	};
	for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
		const qc_ynode *v = qc_ynode_get(n, defs[i].key);
		char ctx[64], *t;
		snprintf(ctx, sizeof ctx, "defaults: %s", defs[i].key);
		QC_TRY(qc_ydoc_text(d, v, ctx, &t));
		if (!t)
			continue;
		if (qc_recipe__check_value(&defs[i], t) != 0)
			return qc_ydoc_err(d, v, "%s: %s", ctx, qc_errmsg());
		/* every call whose tool takes the key and has not set it */
		for (int vi = 0; vi < r->n_variants; vi++) {
			qc_recipe__variant *va = &r->variants[vi];
			qc_recipe__call *calls[64];
			int nc = 0;
			for (int s = 0; s < va->n_steps && nc < 62; s++)
				calls[nc++] = &va->steps[s].call;
			calls[nc++] = &va->pack;
			calls[nc++] = &va->verify;
			for (int c = 0; c < nc; c++) {
				const qc_rt_opt *o = qc_recipe__opt(calls[c]->tool, defs[i].key);
				if (o && !qc_recipe__call_get(calls[c], defs[i].key))
					QC_TRY(qc_recipe__call_set(r, calls[c], o, t));
			}
		}
		const qc_rt_opt *o = qc_recipe__opt(r->synth.tool, defs[i].key);
		if (o && !qc_recipe__call_get(&r->synth, defs[i].key))
			QC_TRY(qc_recipe__call_set(r, &r->synth, o, t));
	}
	return 0;
}

static int parse_native(qc_ydoc *d)
{
	qc_recipe *r = d->r;
	const qc_ynode *root = d->root;
	for (int i = 0; i < root->n; i++)
		if (!qc_recipe__word_in(root->kids[2 * i]->text, top_keys))
			return qc_ydoc_err(d, root->kids[2 * i], "unknown key '%s' (a recipe has: %s)",
			                   root->kids[2 * i]->text, top_keys);
	char *ver;
	QC_TRY(qc_ydoc_text(d, qc_ynode_get(root, "qrecipe"), "qrecipe", &ver));
	if (ver && strcmp(ver, "1") != 0)
		return qc_ydoc_err(d, qc_ynode_get(root, "qrecipe"), "qrecipe: format version '%s' is not "
		                   "known (this qrecipe reads version 1)", ver);
	QC_TRY(parse_vars(d, qc_ynode_get(root, "vars")));
	QC_TRY(check_overrides(r));
	QC_TRY(get_text(d, root, "name", "name", &r->name));
	char *jobs;
	const qc_ynode *jn = qc_ynode_get(root, "jobs");
	QC_TRY(qc_ydoc_text(d, jn, "jobs", &jobs));
	if (jobs) {
		static const qc_rt_opt jo = { "jobs", "", QC_RT_INT, NULL, 1, 1024 };
		if (qc_recipe__check_value(&jo, jobs) != 0)
			return qc_ydoc_err(d, jn, "jobs: %s", qc_errmsg());
		r->jobs = atoi(jobs);
	}
	QC_TRY(parse_model(d, qc_ynode_get(root, "model")));
	const qc_ynode *k;
	if ((k = qc_ynode_get(root, "calib")))
		QC_TRY(parse_tokens(d, k, k, "calib"));
	if ((k = qc_ynode_get(root, "eval")))
		QC_TRY(parse_tokens(d, k, k, "eval"));
	const qc_ynode *tk = qc_ynode_get(root, "tokens");
	if (tk && !qc_ynode_null(tk)) {
		if (tk->type != QC_Y_MAP)
			return qc_ydoc_err(d, tk, "tokens: expected a mapping of NAME: {token set}");
		for (int i = 0; i < tk->n; i++)
			QC_TRY(parse_tokens(d, tk->kids[2 * i], tk->kids[2 * i + 1], tk->kids[2 * i]->text));
	}
	const qc_ynode *vs = qc_ynode_get(root, "variants");
	if (!vs || qc_ynode_null(vs))
		return qc_ydoc_err(d, root, "no variants: say how to quantize (variants: {NAME: {steps: "
		                   "[...]}})");
	if (vs->type != QC_Y_MAP)
		return qc_ydoc_err(d, vs, "variants: expected a mapping of NAME: {steps, release, gates}");
	for (int i = 0; i < vs->n; i++)
		QC_TRY(parse_variant(d, vs->kids[2 * i], vs->kids[2 * i + 1]));
	return apply_defaults(d, qc_ynode_get(root, "defaults"));
}

/* ------------------------------------------------------------ shared checks */

static int at_err(const qc_recipe *r, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int at_err(const qc_recipe *r, int line, int col, const char *fmt, ...)
{
	char msg[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (line)
		return qc_seterr(QC_EFORMAT, "%s:%d:%d: %s", r->file, line, col, msg);
	return qc_seterr(QC_EFORMAT, "%s: %s", r->file, msg);
}

static int add_tool(qc_recipe *r, char *buf, size_t n, const char *tool)
{
	(void)r;
	if (qc_recipe__word_in(tool, buf))
		return 0;
	size_t len = strlen(buf);
	if (len + strlen(tool) + 2 > n)
		return qc_seterr(QC_EINTERNAL, "tool list too long");
	sprintf(buf + len, "%s%s", len ? " " : "", tool);
	return 0;
}

int qc_recipe__finish(qc_recipe *r)
{
	if (r->n_variants == 0)
		return at_err(r, 0, 0, "no variants");
	r->gates_off = strcmp(qc_recipe__getvar(r, "GATES"), "off") == 0;
	for (int vi = 0; r->gates_off && vi < r->n_variants; vi++) {
		qc_recipe__call *c = &r->variants[vi].verify;
		int k = 0;
		for (int i = 0; i < c->n_vals; i++)
			if (!qc_recipe__word_in(c->vals[i].opt->key, "max-ppl-ratio max-kl min-top1"))
				c->vals[k++] = c->vals[i];
		c->n_vals = k;
	}
	for (int vi = 0; vi < r->n_variants; vi++) {
		qc_recipe__variant *v = &r->variants[vi];
		char tools[256] = "";
		if (r->model_source == QC_SRC_SYNTH)
			QC_TRY(add_tool(r, tools, sizeof tools, "qsynth"));
		for (int si = 0; si < v->n_steps; si++) {
			qc_recipe__step *s = &v->steps[si];
			const qc_rt_tool *t = s->call.tool;
			int last = si == v->n_steps - 1;
			s->dense = t->role == QC_RT_STEP_DENSE ||
			           (t->dense_flag && qc_recipe__call_get(&s->call, t->dense_flag));
			if (!last && !s->dense)
				return at_err(r, s->call.line, s->call.col, "%s: %s writes a quantized checkpoint, "
				              "so it must be the last step (a step before it writes a dense one: %s)",
				              v->name, t->name, "qsmooth, qawq scales-only");
			if (last && s->dense)
				return at_err(r, s->call.line, s->call.col, "%s: the last step must quantize; %s "
				              "writes a dense checkpoint (follow it with qgptq, qawq or qfp8)",
				              v->name, t->name);
			if (last && s->pipe && v->n_formats > 1)
				return at_err(r, s->call.line, s->call.col, "%s: pipe: the last step can stream "
				              "into qpack only with one release format (this variant has %d)",
				              v->name, v->n_formats);
			/* the token set it reads */
			int need = t->need_calib && qc_recipe__conds(&s->call, t->need_calib);
			const char *name = s->calib;
			if (name && strcmp(name, "none") == 0) {
				if (need || t->calib == QC_RT_CALIB_ALWAYS)
					return at_err(r, s->call.line, s->call.col, "%s: %s needs a calibration set "
					              "here; calib: none cannot be", v->name, t->name);
				name = NULL;
			} else if (!name && (need || t->calib == QC_RT_CALIB_ALWAYS || t->calib == QC_RT_CALIB_DEFAULT)) {
				name = "calib";
			}
			if (name) {
				qc_recipe__tokens *tok = qc_recipe__find_tokens(r, name);
				if (!tok)
					return at_err(r, s->call.line, s->call.col, "%s: %s reads the token set '%s', "
					              "which the recipe does not define%s", v->name, t->name, name,
					              strcmp(name, "calib") == 0 ? " (add calib: {...})" : "");
				tok->used = 1;
				if (tok->source != QC_TOK_FILE)
					QC_TRY(add_tool(r, tools, sizeof tools, "qcalib"));
			}
			s->calib = (char *)name;
			QC_TRY(add_tool(r, tools, sizeof tools, t->name));
		}
		if (v->n_formats == 0)
			return at_err(r, v->line, v->col, "%s: no release formats (release: [compressed-tensors, "
			              "gptq, awq])", v->name);
		QC_TRY(add_tool(r, tools, sizeof tools, "qpack"));
		/* the evaluation set */
		if (v->eval && strcmp(v->eval, "none") == 0)
			v->eval = NULL;
		else if (!v->eval && qc_recipe__find_tokens(r, "eval"))
			v->eval = "eval";
		if (v->eval) {
			qc_recipe__tokens *tok = qc_recipe__find_tokens(r, v->eval);
			if (!tok)
				return at_err(r, v->verify.line, v->verify.col, "%s: gates: tokens: the recipe "
				              "defines no token set '%s'", v->name, v->eval);
			tok->used = 1;
			if (tok->source != QC_TOK_FILE)
				QC_TRY(add_tool(r, tools, sizeof tools, "qcalib"));
		} else if (qc_recipe__call_get(&v->verify, "max-ppl-ratio") ||
		           qc_recipe__call_get(&v->verify, "max-kl") || qc_recipe__call_get(&v->verify, "min-top1")) {
			return at_err(r, v->verify.line, v->verify.col, "%s: gates: thresholds need an "
			              "evaluation token set (eval: {...}, or gates: {tokens: NAME})", v->name);
		}
		QC_TRY(add_tool(r, tools, sizeof tools, "qverify"));
		QC_TRY(add_tool(r, tools, sizeof tools, "qrecipe"));
		if (!(v->tools = qc_recipe__strdup(r, tools)) ||
		    !(v->release_dir = qc_recipe__printf(r, "release/%s", v->name)))
			return QC_ENOMEM;
	}
	return 0;
}

/* ------------------------------------------------------------ load */

int qc_recipe_parse(qc_recipe **out, const char *name, const char *text, size_t len,
                    int n_set, char *const *set)
{
	*out = NULL;
	qc_recipe *r = calloc(1, sizeof *r);
	if (!r)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = QC_ENOMEM;
	if (!(r->file = qc_recipe__strdup(r, name)) ||
	    !(r->text = qc_recipe__own(r, malloc(len + 1))) ||
	    !(r->overrides = qc_recipe__own(r, calloc((size_t)n_set + 1, sizeof *r->overrides))))
		goto fail;
	memcpy(r->text, text, len);
	r->text[len] = 0;
	r->text_len = len;
	for (int i = 0; i < n_set; i++) {
		const char *eq = strchr(set[i], '=');
		if (!eq || !varname_ok(set[i], (size_t)(eq - set[i]))) {
			rc = qc_seterr(QC_EINVAL, "'%s' is not a variable setting (NAME=value)", set[i]);
			goto fail;
		}
		for (int j = 0; j < i; j++)
			if (strncmp(set[j], set[i], (size_t)(eq - set[i]) + 1) == 0) {
				rc = qc_seterr(QC_EINVAL, "variable '%.*s' is set twice", (int)(eq - set[i]), set[i]);
				goto fail;
			}
		if (!(r->overrides[r->n_overrides++] = qc_recipe__strdup(r, set[i])))
			goto fail;
	}
	/* ${RECIPE_DIR}: the directory of the file as named */
	const char *slash = strrchr(name, '/');
	char *dir = slash ? qc_recipe__printf(r, "%.*s", (int)(slash == name ? 1 : slash - name), name)
	                  : qc_recipe__strdup(r, ".");
	if (!dir || (rc = add_var(r, "RECIPE_DIR", dir)) != 0 ||
	    (rc = qc_recipe__declare(r, "GATES", "on")) != 0)
		goto fail;
	const char *gates = qc_recipe__getvar(r, "GATES");
	if (strcmp(gates, "on") && strcmp(gates, "off")) {
		rc = qc_seterr(QC_EINVAL, "%s: GATES=%s: 'on' or 'off'", name, gates);
		goto fail;
	}
	qc_ydoc d = { NULL, r->file, r };
	if ((rc = qc_ydoc_parse(&d, r->text, len)) != 0)
		goto fail;
	if (!qc_recipe__path_ok(name)) {
		/* the Makefile names the recipe as a prerequisite of the releases */
		rc = qc_seterr(QC_EINVAL, "'%s': a recipe's path must be one make can take (letters, digits "
		               "and _ . / - + , @ = only)", name);
		goto fail;
	}
	if (!d.root || (d.root->type == QC_Y_SCALAR && qc_ynode_null(d.root))) {
		rc = qc_seterr(QC_EFORMAT, "%s: the recipe is empty", name);
		goto fail;
	}
	if (d.root->type != QC_Y_MAP) {
		rc = qc_ydoc_err(&d, d.root, "a recipe is a mapping (model, calib, variants, ... or an "
		                 "llm-compressor *_stage)");
		goto fail;
	}
	if (qc_recipe__is_llmc(d.root)) {
		r->kind = QC_RECIPE_LLMC;
		if ((rc = qc_recipe__llmc_vars(r)) != 0 || (rc = check_overrides(r)) != 0 ||
		    (rc = qc_recipe__parse_llmc(&d)) != 0)
			goto fail;
	} else if ((rc = parse_native(&d)) != 0) {
		goto fail;
	}
	if ((rc = qc_recipe__finish(r)) != 0)
		goto fail;
	if (!r->name) {
		const char *b = slash ? slash + 1 : name;
		const char *dot = strrchr(b, '.');
		r->name = qc_recipe__printf(r, "%.*s", (int)(dot && dot > b ? dot - b : (long)strlen(b)), b);
		if (!r->name) {
			rc = QC_ENOMEM;
			goto fail;
		}
	}
	*out = r;
	return 0;
fail:
	qc_recipe_free(r);
	return rc;
}

int qc_recipe_load(qc_recipe **out, const char *path, int n_set, char *const *set)
{
	char *text;
	size_t len;
	*out = NULL;
	QC_TRY(qc_read_file(path, (size_t)16 << 20, &text, &len));
	int rc = qc_recipe_parse(out, path, text, len, n_set, set);
	free(text);
	return rc;
}

/* ------------------------------------------------------------ accessors */

qc_recipe_kind qc_recipe_kind_of(const qc_recipe *r) { return r->kind; }
int qc_recipe_n_variants(const qc_recipe *r) { return r->n_variants; }
int qc_recipe_jobs(const qc_recipe *r) { return r->jobs; }

const char *qc_recipe_variant(const qc_recipe *r, int i)
{
	return i >= 0 && i < r->n_variants ? r->variants[i].name : NULL;
}

int qc_recipe_find_variant(const qc_recipe *r, const char *name)
{
	for (int i = 0; i < r->n_variants; i++)
		if (strcmp(r->variants[i].name, name) == 0)
			return i;
	return -1;
}

const char *qc_recipe_variant_tools(const qc_recipe *r, int i)
{
	return i >= 0 && i < r->n_variants ? r->variants[i].tools : NULL;
}

const char *qc_recipe_release_dir(const qc_recipe *r, int i)
{
	return i >= 0 && i < r->n_variants ? r->variants[i].release_dir : NULL;
}

const char *qc_recipe__getvar(const qc_recipe *r, const char *name)
{
	for (int i = 0; i < r->n_vars; i++)
		if (strcmp(r->vars[i].name, name) == 0)
			return r->vars[i].value;
	return NULL;
}
