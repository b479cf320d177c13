/* qc_recipe_yaml.c - YAML text to a tree of nodes with their positions
 * (libyaml's document loader), and scalar values with ${VARIABLES}
 * expanded. This file and the tool qrecipe are the only users of libyaml. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "qc_err.h"
#include "qc_vec.h"
#include "qc_recipe_int.h"

/* aliases copy their node: bound the copies (an alias bomb) */
#define MAX_NODES 200000

int qc_ydoc_err(const qc_ydoc *d, const qc_ynode *n, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n)
		return qc_seterr(QC_EFORMAT, "%s:%d:%d: %s", d->file, n->line, n->col, msg);
	return qc_seterr(QC_EFORMAT, "%s: %s", d->file, msg);
}

typedef struct conv {
	qc_ydoc *d;
	yaml_document_t *doc;
	size_t made;
} conv;

static int convert(conv *c, int id, int depth, qc_ynode **out)
{
	yaml_node_t *y = yaml_document_get_node(c->doc, id);
	qc_recipe *r = c->d->r;
	if (!y)
		return qc_seterr(QC_EINTERNAL, "%s: YAML node %d missing", c->d->file, id);
	if (++c->made > MAX_NODES || depth > 64)
		return qc_seterr(QC_EFORMAT, "%s:%d:%d: the document is too large or too deep (aliases?)",
		                 c->d->file, (int)y->start_mark.line + 1, (int)y->start_mark.column + 1);
	qc_ynode *n = qc_recipe__own(r, calloc(1, sizeof *n));
	if (!n)
		return QC_ENOMEM;
	n->line = (int)y->start_mark.line + 1;
	n->col = (int)y->start_mark.column + 1;
	switch (y->type) {
	case YAML_SCALAR_NODE: {
		n->type = QC_Y_SCALAR;
		char *t = qc_recipe__own(r, malloc(y->data.scalar.length + 1));
		if (!t)
			return QC_ENOMEM;
		memcpy(t, y->data.scalar.value, y->data.scalar.length);
		t[y->data.scalar.length] = 0;
		if (strlen(t) != y->data.scalar.length)
			return qc_ydoc_err(c->d, n, "a value holds a NUL character");
		n->text = t;
		n->plain = y->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		break;
	}
	case YAML_SEQUENCE_NODE: {
		n->type = QC_Y_SEQ;
		int k = (int)(y->data.sequence.items.top - y->data.sequence.items.start);
		n->kids = qc_recipe__own(r, calloc((size_t)k + 1, sizeof *n->kids));
		if (!n->kids)
			return QC_ENOMEM;
		for (int i = 0; i < k; i++)
			QC_TRY(convert(c, y->data.sequence.items.start[i], depth + 1, &n->kids[i]));
		n->n = k;
		break;
	}
	case YAML_MAPPING_NODE: {
		n->type = QC_Y_MAP;
		int k = (int)(y->data.mapping.pairs.top - y->data.mapping.pairs.start);
		n->kids = qc_recipe__own(r, calloc(2 * (size_t)k + 1, sizeof *n->kids));
		if (!n->kids)
			return QC_ENOMEM;
		for (int i = 0; i < k; i++) {
			yaml_node_pair_t *p = &y->data.mapping.pairs.start[i];
			QC_TRY(convert(c, p->key, depth + 1, &n->kids[2 * i]));
			QC_TRY(convert(c, p->value, depth + 1, &n->kids[2 * i + 1]));
			qc_ynode *key = n->kids[2 * i];
			if (key->type != QC_Y_SCALAR)
				return qc_ydoc_err(c->d, key, "a key must be a name, not a %s",
				                   key->type == QC_Y_MAP ? "mapping" : "list");
			for (int j = 0; j < i; j++)
				if (strcmp(n->kids[2 * j]->text, key->text) == 0)
					return qc_ydoc_err(c->d, key, "duplicate key '%s' (first at line %d)",
					                   key->text, n->kids[2 * j]->line);
		}
		n->n = k;
		break;
	}
	default:
		return qc_ydoc_err(c->d, n, "empty YAML node");
	}
	*out = n;
	return 0;
}

int qc_ydoc_parse(qc_ydoc *d, const char *text, size_t len)
{
	yaml_parser_t p;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&p))
		return qc_seterr(QC_ENOMEM, "out of memory (YAML parser)");
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	int rc = 0;
	if (!yaml_parser_load(&p, &doc)) {
		const yaml_mark_t *m = p.problem ? &p.problem_mark : &p.context_mark;
		if (p.error == YAML_MEMORY_ERROR)
			rc = qc_seterr(QC_ENOMEM, "out of memory (YAML parser)");
		else if (p.context)
			rc = qc_seterr(QC_EFORMAT, "%s:%d:%d: %s %s", d->file, (int)m->line + 1,
			               (int)m->column + 1, p.problem ? p.problem : "bad YAML", p.context);
		else
			rc = qc_seterr(QC_EFORMAT, "%s:%d:%d: %s", d->file, (int)m->line + 1,
			               (int)m->column + 1, p.problem ? p.problem : "bad YAML");
		yaml_parser_delete(&p);
		return rc;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root) {
		conv c = { d, &doc, 0 };
		rc = convert(&c, 1, 0, &d->root);
		if (rc == 0) {
			/* a second document is not a recipe */
			yaml_document_t more;
			if (!yaml_parser_load(&p, &more)) {
				const yaml_mark_t *m = &p.problem_mark;
				rc = qc_seterr(QC_EFORMAT, "%s:%d:%d: %s", d->file, (int)m->line + 1,
				               (int)m->column + 1, p.problem ? p.problem : "bad YAML");
			} else {
				yaml_node_t *r2 = yaml_document_get_root_node(&more);
				if (r2)
					rc = qc_seterr(QC_EFORMAT, "%s:%d:%d: a recipe is one YAML document, "
					               "this is a second one", d->file,
					               (int)r2->start_mark.line + 1, (int)r2->start_mark.column + 1);
				yaml_document_delete(&more);
			}
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&p);
	return rc;
}

qc_ynode *qc_ynode_get(const qc_ynode *n, const char *key)
{
	if (!n || n->type != QC_Y_MAP)
		return NULL;
	for (int i = 0; i < n->n; i++)
		if (strcmp(n->kids[2 * i]->text, key) == 0)
			return n->kids[2 * i + 1];
	return NULL;
}

int qc_ynode_null(const qc_ynode *n)
{
	if (!n || n->type != QC_Y_SCALAR || !n->plain)
		return 0;
	const char *t = n->text;
	return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

int qc_recipe__bool(const char *t, int *b)
{
	/* YAML 1.1's booleans, as PyYAML (and so llm-compressor) reads them */
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" };
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcmp(t, yes[i]) == 0)
			return *b = 1, 1;
		if (strcmp(t, no[i]) == 0)
			return *b = 0, 1;
	}
	return 0;
}

static const char *var_value(const qc_recipe *r, const char *name, size_t len)
{
	for (int i = 0; i < r->n_vars; i++)
		if (strlen(r->vars[i].name) == len && memcmp(r->vars[i].name, name, len) == 0)
			return r->vars[i].value;
	return NULL;
}

int qc_ydoc_text(qc_ydoc *d, const qc_ynode *n, const char *what, char **out)
{
	*out = NULL;
	if (!n || qc_ynode_null(n))
		return 0;
	if (n->type != QC_Y_SCALAR)
		return qc_ydoc_err(d, n, "%s: expected a value, not a %s", what,
		                   n->type == QC_Y_MAP ? "mapping" : "list");
	const char *t = n->text;
	if (!strstr(t, "${")) {
		*out = (char *)t;
		return 0;
	}
	size_t cap = strlen(t) + 1, len = 0;
	char *s = malloc(cap);
	if (!s)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int vars_only = 1;
	for (const char *p = t; *p;) {
		const char *add = p;
		size_t k = 1;
		if (p[0] == '$' && p[1] == '{') {
			const char *e = strchr(p + 2, '}');
			size_t nl = e ? (size_t)(e - p - 2) : 0;
			int ok = e && nl > 0;
			for (size_t i = 0; ok && i < nl; i++) {
				char ch = p[2 + i];
				ok = ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
				     (i > 0 && ch >= '0' && ch <= '9');
			}
			if (!ok) {
				free(s);
				return qc_ydoc_err(d, n, "%s: '${' does not start a variable name in '%s'",
				                   what, t);
			}
			add = var_value(d->r, p + 2, nl);
			if (!add) {
				free(s);
				return qc_ydoc_err(d, n, "%s: unknown variable '%.*s' (declare it under vars)",
				                   what, (int)nl, p + 2);
			}
			k = strlen(add);
			p = e + 1;
		} else {
			vars_only = 0;
			p++;
		}
		if (len + k + 1 > cap) {
			cap = 2 * (len + k + 1);
			char *g = realloc(s, cap);
			if (!g) {
				free(s);
				return qc_seterr(QC_ENOMEM, "out of memory");
			}
			s = g;
		}
		memcpy(s + len, add, k);
		len += k;
	}
	s[len] = 0;
	if (len == 0 && vars_only) {
		free(s);
		return 0; /* variables that expand to nothing: the key is left out */
	}
	*out = qc_recipe__own(d->r, s);
	return *out ? 0 : QC_ENOMEM;
}
