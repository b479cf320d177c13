/* qc_docs.c - calibration documents from text and JSON Lines (qc_docs.h). */
#include "qc_docs.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_rng.h"

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory reading documents");
}

static int docs_add(qc_docs *d, const char *p, size_t n)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 256;
		qc_doc *v = realloc(d->v, cap * sizeof *v);
		if (!v)
			return nomem();
		d->v = v;
		d->cap = cap;
	}
	char *c = malloc(n + 1);
	if (!c)
		return nomem();
	memcpy(c, p, n);
	c[n] = 0;
	d->v[d->n++] = (qc_doc){ c, n };
	return 0;
}

static int blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\f' && p[i] != '\v')
			return 0;
	return 1;
}

int qc_docs_add_text(qc_docs *d, const char *p, size_t n, qc_docs_split split)
{
	if (split == QC_DOCS_WHOLE) {
		/* blank lines and all: a text of only white space is no document */
		for (size_t i = 0; i < n; i++)
			if (p[i] != '\n' && !blank(p + i, 1))
				return docs_add(d, p, n);
		return 0;
	}
	size_t start = 0, dstart = 0, dend = 0;
	int in_doc = 0;
	while (start < n) {
		const char *nl = memchr(p + start, '\n', n - start);
		size_t end = nl ? (size_t)(nl - p) : n, lend = end;
		if (lend > start && p[lend - 1] == '\r')
			lend--;
		int b = blank(p + start, lend - start);
		if (split == QC_DOCS_LINES) {
			if (!b)
				QC_TRY(docs_add(d, p + start, lend - start));
		} else if (b) {
			if (in_doc)
				QC_TRY(docs_add(d, p + dstart, dend - dstart));
			in_doc = 0;
		} else {
			if (!in_doc)
				dstart = start;
			in_doc = 1;
			dend = lend;
		}
		start = end + 1;
	}
	return in_doc ? docs_add(d, p + dstart, dend - dstart) : 0;
}

/* a growing text buffer for one record */
typedef struct text {
	char *p;
	size_t n, cap;
} text;

static int put_bytes(text *t, const char *s, size_t n)
{
	if (t->n + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		while (t->n + n + 1 > cap)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p)
			return nomem();
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->n, s, n);
	t->n += n;
	return 0;
}

/* Append field name[nlen]'s text: 0, 1 when the field is missing (or not a
 * scalar), or an error. */
static int field_text(json_t *obj, const char *name, size_t nlen, text *out)
{
	json_t *v = json_object_getn(obj, name, nlen);
	if (!v || json_is_null(v) || json_is_object(v) || json_is_array(v))
		return 1;
	if (json_is_string(v))
		return put_bytes(out, json_string_value(v), json_string_length(v));
	char *tmp = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!tmp)
		return 1;
	int rc = put_bytes(out, tmp, strlen(tmp));
	free(tmp);
	return rc;
}

/* Expand a checked template over one record: 0, 1 when a field is missing,
 * or an error. */
static int expand(const char *t, json_t *obj, text *out)
{
	out->n = 0;
	for (const char *p = t; *p; p++) {
		int rc;
		if (p[0] == '\\' && p[1]) {
			p++;
			char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
			rc = put_bytes(out, &c, 1);
		} else if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
			rc = put_bytes(out, p++, 1);
		} else if (p[0] == '{') {
			const char *e = strchr(p, '}');
			if (!e)
				return 1;
			rc = field_text(obj, p + 1, (size_t)(e - p - 1), out);
			p = e;
		} else {
			rc = put_bytes(out, p, 1);
		}
		if (rc)
			return rc;
	}
	return 0;
}

int qc_docs_check_template(const char *t)
{
	for (const char *p = t; *p; p++) {
		if (p[0] == '\\' && p[1]) {
			p++;
		} else if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
			p++;
		} else if (p[0] == '{') {
			const char *e = strchr(p, '}');
			if (!e || e == p + 1)
				return qc_seterr(QC_EINVAL, "bad template '%s': '{' without a field name and '}'",
				                 t);
			p = e;
		} else if (p[0] == '}') {
			return qc_seterr(QC_EINVAL, "bad template '%s': '}' without '{'", t);
		}
	}
	return 0;
}

/* one non-blank line of JSON Lines */
static int add_record(qc_docs *d, const char *name, int64_t lineno, const char *p, size_t n,
                      const char *field, const char *tmpl, int strict, text *buf)
{
	d->records++;
	json_error_t e;
	json_t *obj = json_loadb(p, n, 0, &e);
	int rc = 0;
	if (!json_is_object(obj)) {
		d->skipped_not_object++;
		if (strict)
			rc = qc_seterr(QC_EFORMAT, "'%s' line %" PRId64 ": not a JSON object", name, lineno);
		json_decref(obj);
		return rc;
	}
	buf->n = 0;
	rc = field ? field_text(obj, field, strlen(field), buf) : expand(tmpl, obj, buf);
	json_decref(obj);
	if (rc == 1) {
		d->skipped_no_field++;
		return strict ? qc_seterr(QC_EFORMAT, "'%s' line %" PRId64 ": %s", name, lineno,
		                          field ? "no string field of that name"
		                                : "a template field is missing")
		              : 0;
	}
	if (rc)
		return rc;
	return buf->n > 0 ? docs_add(d, buf->p, buf->n) : 0;
}

int qc_docs_add_jsonl(qc_docs *d, const char *name, const char *p, size_t n, const char *field,
                      const char *tmpl, int strict)
{
	if (!field == !tmpl)
		return qc_seterr(QC_EINVAL, "documents of '%s': give a field or a template", name);
	text buf = { 0 };
	int64_t lineno = 0;
	size_t start = 0;
	int rc = 0;
	while (start < n && rc == 0) {
		const char *nl = memchr(p + start, '\n', n - start);
		size_t end = nl ? (size_t)(nl - p) : n;
		lineno++;
		if (!blank(p + start, end - start))
			rc = add_record(d, name, lineno, p + start, end - start, field, tmpl, strict, &buf);
		start = end + 1;
	}
	free(buf.p);
	return rc;
}

void qc_docs_shuffle(qc_docs *d, uint64_t seed)
{
	qc_rng r;
	qc_rng_derive(&r, seed, "qcalib shuffle");
	for (size_t i = d->n; i > 1; i--) {
		size_t j = (size_t)qc_rng_below(&r, i);
		qc_doc t = d->v[i - 1];
		d->v[i - 1] = d->v[j];
		d->v[j] = t;
	}
}

void qc_docs_free(qc_docs *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].p);
	free(d->v);
	memset(d, 0, sizeof *d);
}

int qc_docs_read_input(const char *path, char **data, size_t *len, qc_h128 *hash)
{
	qc_source *s;
	QC_TRY(qc_source_open(&s, path));
	size_t n = 0, cap = 1 << 16;
	char *b = malloc(cap);
	int rc = b ? 0 : qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", path);
	while (rc == 0) {
		if (n == cap) {
			char *nb = cap < ((size_t)1 << 40) ? realloc(b, cap * 2) : NULL;
			if (!nb) {
				rc = qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", path);
				break;
			}
			b = nb;
			cap *= 2;
		}
		size_t got;
		if ((rc = qc_source_read(s, b + n, cap - n, &got)) < 0 || got == 0)
			break;
		n += got;
	}
	qc_source_close(s);
	if (rc < 0) {
		free(b);
		return rc;
	}
	*data = b;
	*len = n;
	*hash = qc_xxh3_128(b, n);
	return 0;
}

int qc_docs_add_input(qc_docs *d, const char *path, const char *field, const char *tmpl, int strict,
                      qc_docs_split split, qc_h128 *hash)
{
	char *data;
	size_t len;
	QC_TRY(qc_docs_read_input(path, &data, &len, hash));
	const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	int rc = field || tmpl ? qc_docs_add_jsonl(d, name, data, len, field, tmpl, strict)
	                       : qc_docs_add_text(d, data, len, split);
	free(data);
	return rc;
}

int qc_docs_model_ids(const char *dir, const qc_tok *t, int64_t *vocab, int32_t *eos, int32_t *pad)
{
	int64_t cfg_vocab = -1, cfg_eos = -1;
	char *p = qc_path_join(dir, "config.json");
	json_t *j = p ? json_load_file(p, 0, NULL) : NULL;
	free(p);
	if (j) {
		json_t *v = json_object_get(j, "vocab_size"), *e = json_object_get(j, "eos_token_id");
		if (json_is_integer(v) && json_integer_value(v) > 0)
			cfg_vocab = json_integer_value(v);
		if (json_is_array(e))
			e = json_array_get(e, 0);
		if (json_is_integer(e))
			cfg_eos = json_integer_value(e);
		json_decref(j);
	}
	*vocab = qc_tok_vocab_size(t);
	if (cfg_vocab > 0) {
		/* the embedding may have more rows than the tokenizer has ids
		 * (padding for speed), never fewer */
		if (cfg_vocab < *vocab)
			return qc_seterr(QC_EINVAL, "config.json says vocab_size %" PRId64 " but the tokenizer "
			                 "has ids up to %" PRId64, cfg_vocab, *vocab - 1);
		*vocab = cfg_vocab;
	}
	*eos = qc_tok_eos(t);
	if (*eos < 0 && cfg_eos >= 0 && cfg_eos < *vocab)
		*eos = (int32_t)cfg_eos;
	*pad = *eos >= 0 ? *eos : 0;
	return 0;
}

// ---------------------------------------------------------------- rows

int qc_rows_alloc(qc_rows *r, int64_t cap, int64_t len)
{
	memset(r, 0, sizeof *r);
	r->ids = calloc((size_t)(cap * len) + 1, sizeof *r->ids);
	r->lens = calloc((size_t)cap + 1, sizeof *r->lens);
	if (!r->ids || !r->lens) {
		qc_rows_free(r);
		return qc_seterr(QC_ENOMEM, "out of memory for %" PRId64 " x %" PRId64 " tokens", cap, len);
	}
	r->cap = cap;
	r->len = len;
	return 0;
}

void qc_rows_free(qc_rows *r)
{
	free(r->ids);
	free(r->lens);
	memset(r, 0, sizeof *r);
}

int qc_rows_random(qc_rows *r, const qc_tok *t, int64_t vocab, uint64_t seed)
{
	int32_t *ok = malloc((size_t)(vocab > 0 ? vocab : 1) * sizeof *ok);
	if (!ok)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int64_t k = 0;
	for (int64_t id = 0; id < vocab; id++)
		if (qc_tok_id_type(t, id) == QC_TOK_ID_NORMAL)
			ok[k++] = (int32_t)id;
	if (k == 0) {
		free(ok);
		return qc_seterr(QC_EINVAL, "no ordinary token ids below %" PRId64 " to sample from", vocab);
	}
	qc_rng g;
	qc_rng_derive(&g, seed, "qcalib random");
	for (int64_t i = 0; i < r->cap * r->len; i++)
		r->ids[i] = ok[qc_rng_below(&g, (uint64_t)k)];
	for (int64_t i = 0; i < r->cap; i++)
		r->lens[i] = (int32_t)r->len;
	r->n = r->cap;
	free(ok);
	return 0;
}

int qc_rows_pack(qc_rows *r, qc_tok *t, const qc_docs *d, int32_t eos, int64_t *used,
                 int64_t *produced)
{
	qc_ids ids = { 0 };
	int64_t need = r->cap * r->len, have = 0;
	int rc = 0;
	*used = 0;
	for (size_t i = 0; i < d->n && have < need; i++) {
		ids.n = 0;
		if ((rc = qc_tok_encode(t, d->v[i].p, d->v[i].n, 0, &ids)) < 0 ||
		    (rc = qc_ids_push(&ids, eos)) < 0)
			break;
		int64_t take = (int64_t)ids.n < need - have ? (int64_t)ids.n : need - have;
		memcpy(r->ids + have, ids.v, (size_t)take * sizeof *ids.v);
		have += take;
		(*used)++;
	}
	qc_ids_release(&ids);
	if (rc < 0)
		return rc;
	r->n = have / r->len;   /* an incomplete last row is dropped */
	for (int64_t i = 0; i < r->n; i++)
		r->lens[i] = (int32_t)r->len;
	*produced = have;
	return 0;
}

int64_t qc_rows_tokens(const qc_rows *r)
{
	int64_t total = 0;
	for (int64_t i = 0; i < r->n; i++)
		total += r->lens[i];
	return total;
}

int qc_rows_pad(qc_rows *r, qc_tok *t, const qc_docs *d, int32_t pad, int64_t *used)
{
	qc_ids ids = { 0 };
	int rc = 0;
	*used = 0;
	r->n = 0;
	for (size_t i = 0; i < d->n && r->n < r->cap; i++) {
		ids.n = 0;
		if ((rc = qc_tok_encode(t, d->v[i].p, d->v[i].n, QC_TOK_ADD_SPECIAL, &ids)) < 0)
			break;
		int64_t k = (int64_t)ids.n < r->len ? (int64_t)ids.n : r->len;
		int32_t *row = r->ids + r->n * r->len;
		memcpy(row, ids.v, (size_t)k * sizeof *row);
		for (int64_t j = k; j < r->len; j++)
			row[j] = pad;
		r->lens[r->n++] = (int32_t)k;
		(*used)++;
	}
	qc_ids_release(&ids);
	return rc < 0 ? rc : 0;
}
