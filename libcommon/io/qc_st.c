/*
 * qc_st.c - safetensors reader (strict validation) and streaming writer
 * (see qc_st.h for the format and the list of checks).
 *
 * The reader parses the header with jansson (JSON_REJECT_DUPLICATES catches
 * duplicate tensor names; invalid UTF-8 and NUL bytes are rejected by the
 * parser) and keeps its own copy of every name, so the JSON tree is freed
 * as soon as the header is validated. Validation never touches tensor data:
 * the header alone, plus the file size, decides whether a file is sound.
 */
#include "qc_st.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qc_err.h"
#include "qc_strmap.h"
#include "qc_vec.h"

// ---------------------------------------------------------------- reader

struct st_ent {
	qc_tensor t;
	uint64_t begin, end;       /* relative to the data buffer */
};

struct qc_st {
	char *name;
	const unsigned char *image; /* whole file, or NULL for a header-only reader */
	size_t image_len;
	int release;                /* 0 nothing, 1 free(image), 2 qc_unmap(image) */
	void *aligned;              /* the data buffer copied to an aligned block, or NULL */
	uint64_t file_size, header_size;
	size_t n;
	struct st_ent *ents;        /* sorted by (begin, end) */
	size_t *by_name;            /* indices into ents sorted by name */
	size_t nmeta;
	char **mkey, **mval;        /* sorted by key */
};

#define BAD(st, ...) bad_((st)->name, __VA_ARGS__)
static int bad_(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_(const char *name, const char *fmt, ...)
{
	char detail[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return qc_seterr(QC_EFORMAT, "invalid safetensors file '%s': %s", name, detail);
}

static int prefix_check(const unsigned char p[8], uint64_t file_size, uint64_t *n, const char *name)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	if (v < 2)
		return bad_(name, "header length %llu is too small", (unsigned long long)v);
	if (v > QC_ST_MAX_HEADER)
		return bad_(name, "header length %llu is larger than %u", (unsigned long long)v,
		            QC_ST_MAX_HEADER);
	if (v > file_size - 8)
		return bad_(name, "header length %llu runs past the end of the file (%llu bytes)",
		            (unsigned long long)v, (unsigned long long)file_size);
	*n = v;
	return 0;
}

int qc_st_check_prefix(const unsigned char prefix[8], uint64_t file_size, uint64_t *header_len)
{
	if (file_size < 8)
		return bad_("<stream>", "file of %llu bytes is shorter than the 8-byte prefix",
		            (unsigned long long)file_size);
	return prefix_check(prefix, file_size, header_len, "<stream>");
}

static int cmp_ent(const void *a, const void *b)
{
	const struct st_ent *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->t.name, y->t.name);
}

/* qsort has no context argument; the entries being sorted by name are
 * reached through this pointer, set for the duration of one sort. */
static _Thread_local const struct st_ent *sort_ents;
static int cmp_by_name(const void *a, const void *b)
{
	return strcmp(sort_ents[*(const size_t *)a].t.name, sort_ents[*(const size_t *)b].t.name);
}
static _Thread_local char **sort_keys;
static int cmp_meta(const void *a, const void *b)
{
	return strcmp(sort_keys[*(const size_t *)a], sort_keys[*(const size_t *)b]);
}

/* An unsigned JSON integer that fits int64; 0 or -1. */
static int json_u64(const json_t *v, int64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int parse_entry(qc_st *st, const char *key, json_t *v, struct st_ent *e)
{
	if (!json_is_object(v))
		return BAD(st, "entry of tensor '%s' is not an object", key);
	json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
	       *jo = json_object_get(v, "data_offsets");
	if (!jd || !js || !jo || json_object_size(v) != 3)
		return BAD(st, "tensor '%s' must have exactly dtype, shape and data_offsets", key);
	if (!json_is_string(jd))
		return BAD(st, "dtype of tensor '%s' is not a string", key);
	e->t.dtype = qc_dtype_from_name(json_string_value(jd));
	if (e->t.dtype == QC_DT_INVALID)
		return BAD(st, "tensor '%s' has unknown dtype '%s'", key, json_string_value(jd));
	if (!json_is_array(js))
		return BAD(st, "shape of tensor '%s' is not a list", key);
	if (json_array_size(js) > QC_MAX_DIMS)
		return BAD(st, "tensor '%s' has %zu dimensions (at most %d)", key, json_array_size(js),
		           QC_MAX_DIMS);
	e->t.ndim = (int)json_array_size(js);
	for (int i = 0; i < e->t.ndim; i++)
		if (json_u64(json_array_get(js, (size_t)i), &e->t.shape[i]) != 0)
			return BAD(st, "shape of tensor '%s' has a dimension that is not a non-negative integer",
			           key);
	int64_t b, en;
	if (!json_is_array(jo) || json_array_size(jo) != 2 || json_u64(json_array_get(jo, 0), &b) ||
	    json_u64(json_array_get(jo, 1), &en))
		return BAD(st, "data_offsets of tensor '%s' are not two non-negative integers", key);
	if (en < b)
		return BAD(st, "data_offsets of tensor '%s' end before they begin [%lld, %lld]", key,
		           (long long)b, (long long)en);
	int64_t numel = qc_numel(e->t.ndim, e->t.shape);
	int64_t nbytes = numel < 0 ? -1 : qc_nbytes(e->t.dtype, numel);
	char sh[160];
	qc_shape_str(sh, sizeof sh, e->t.ndim, e->t.shape);
	if (numel < 0 || nbytes < 0) {
		if (numel >= 0 && qc_dtype_bits(e->t.dtype) % 8)
			return BAD(st, "tensor '%s' %s %s is not a whole number of bytes", key,
			           qc_dtype_name(e->t.dtype), sh);
		return BAD(st, "size of tensor '%s' %s %s overflows", key, qc_dtype_name(e->t.dtype), sh);
	}
	if (en - b != nbytes)
		return BAD(st, "tensor '%s' %s %s needs %lld bytes but data_offsets [%lld, %lld] hold %lld",
		           key, qc_dtype_name(e->t.dtype), sh, (long long)nbytes, (long long)b,
		           (long long)en, (long long)(en - b));
	e->begin = (uint64_t)b;
	e->end = (uint64_t)en;
	e->t.nbytes = (size_t)nbytes;
	e->t.name = strdup(key);
	if (!e->t.name)
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
	return 0;
}

static int parse_meta(qc_st *st, json_t *m)
{
	if (!json_is_object(m))
		return BAD(st, "__metadata__ is not an object");
	size_t n = json_object_size(m);
	st->mkey = calloc(n ? n : 1, sizeof *st->mkey);
	st->mval = calloc(n ? n : 1, sizeof *st->mval);
	if (!st->mkey || !st->mval)
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
	const char *k;
	json_t *v;
	json_object_foreach(m, k, v) {
		if (!json_is_string(v))
			return BAD(st, "__metadata__ value of '%s' is not a string", k);
		st->mkey[st->nmeta] = strdup(k);
		st->mval[st->nmeta] = strdup(json_string_value(v));
		st->nmeta++;
		if (!st->mkey[st->nmeta - 1] || !st->mval[st->nmeta - 1])
			return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
	}
	/* sort keys (with values) so lookups can bisect and listings are stable */
	size_t *idx = malloc((n ? n : 1) * sizeof *idx);
	char **k2 = malloc((n ? n : 1) * sizeof *k2), **v2 = malloc((n ? n : 1) * sizeof *v2);
	if (!idx || !k2 || !v2) {
		free(idx), free(k2), free(v2);
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	sort_keys = st->mkey;
	qsort(idx, n, sizeof *idx, cmp_meta);
	for (size_t i = 0; i < n; i++) {
		k2[i] = st->mkey[idx[i]];
		v2[i] = st->mval[idx[i]];
	}
	free(idx);
	free(st->mkey);
	free(st->mval);
	st->mkey = k2;
	st->mval = v2;
	return 0;
}

/* Parse and validate the header (json, n bytes) of a file of file_size bytes. */
static int parse_header(qc_st *st, const char *json, size_t n, uint64_t file_size)
{
	if (n == 0 || json[0] != '{')
		return BAD(st, "header does not start with '{'");
	json_error_t err;
	json_t *root = json_loadb(json, n, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return BAD(st, "bad JSON header: %s (at byte %d)", err.text, err.position);
	int rc = 0;
	if (!json_is_object(root)) {
		rc = BAD(st, "header is not a JSON object");
		goto out;
	}
	size_t cap = json_object_size(root);
	st->ents = calloc(cap ? cap : 1, sizeof *st->ents);
	if (!st->ents) {
		rc = qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			rc = parse_meta(st, v);
		} else {
			rc = parse_entry(st, key, v, &st->ents[st->n]);
			if (rc == 0 || st->ents[st->n].t.name)
				st->n++;
		}
		if (rc)
			goto out;
	}
	/* Sorted by offset the ranges must tile [0, end) exactly: a gap is
	 * unaccounted bytes, an overlap two tensors sharing storage. */
	qsort(st->ents, st->n, sizeof *st->ents, cmp_ent);
	uint64_t expect = 0;
	for (size_t i = 0; i < st->n; i++) {
		struct st_ent *e = &st->ents[i];
		if (e->begin > expect) {
			rc = BAD(st, "gap of %llu bytes before tensor '%s' (data_offsets [%llu, %llu])",
			         (unsigned long long)(e->begin - expect), e->t.name,
			         (unsigned long long)e->begin, (unsigned long long)e->end);
			goto out;
		}
		if (e->begin < expect) {
			rc = BAD(st, "tensor '%s' overlaps tensor '%s' (data_offsets [%llu, %llu])", e->t.name,
			         st->ents[i - 1].t.name, (unsigned long long)e->begin, (unsigned long long)e->end);
			goto out;
		}
		expect = e->end;
	}
	st->header_size = 8 + (uint64_t)n;
	if (expect > file_size - st->header_size) {
		rc = BAD(st, "tensor data runs past the end of the file (needs %llu bytes, file has %llu)",
		         (unsigned long long)(st->header_size + expect), (unsigned long long)file_size);
		goto out;
	}
	if (expect < file_size - st->header_size) {
		rc = BAD(st, "%llu bytes after the last tensor",
		         (unsigned long long)(file_size - st->header_size - expect));
		goto out;
	}
	st->file_size = file_size;
	st->by_name = malloc((st->n ? st->n : 1) * sizeof *st->by_name);
	if (!st->by_name) {
		rc = qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
		goto out;
	}
	for (size_t i = 0; i < st->n; i++)
		st->by_name[i] = i;
	sort_ents = st->ents;
	qsort(st->by_name, st->n, sizeof *st->by_name, cmp_by_name);
out:
	json_decref(root);
	return rc;
}

static qc_st *st_new(const char *name)
{
	qc_st *st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	st->name = strdup(name ? name : "<memory>");
	if (!st->name) {
		free(st);
		return NULL;
	}
	return st;
}

static int misaligned(const qc_tensor *t, const unsigned char *p)
{
	size_t a = qc_dtype_size(t->dtype);
	return a > 1 && (uintptr_t)p % (a > 8 ? 8 : a) != 0;
}

/* Validate a whole image and point the views into it. */
static int open_image(qc_st *st)
{
	if (st->image_len < 8)
		return BAD(st, "truncated to %zu bytes (shorter than the 8-byte prefix)", st->image_len);
	uint64_t n;
	QC_TRY(prefix_check(st->image, st->image_len, &n, st->name));
	QC_TRY(parse_header(st, (const char *)st->image + 8, (size_t)n, st->image_len));
	const unsigned char *data = st->image + st->header_size;
	/* Views must be naturally aligned (callers load uint16_t, uint32_t and
	 * float from them). Our writers order tensors by alignment and pad the
	 * header to a multiple of 8, so in a mapping or a malloc'd image every
	 * view is aligned; a hand-made file (a header length or an order that
	 * is legal but not padded), or an image at an odd address, has its
	 * misaligned tensors copied once into one aligned block. */
	size_t extra = 0;
	for (size_t i = 0; i < st->n; i++)
		if (misaligned(&st->ents[i].t, data + st->ents[i].begin))
			extra += (st->ents[i].t.nbytes + 7) / 8 * 8;
	unsigned char *blk = NULL;
	if (extra) {
		blk = st->aligned = aligned_alloc(8, extra);
		if (!blk)
			return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", st->name);
	}
	for (size_t i = 0; i < st->n; i++) {
		const unsigned char *p = data + st->ents[i].begin;
		if (misaligned(&st->ents[i].t, p)) {
			memcpy(blk, p, st->ents[i].t.nbytes);
			st->ents[i].t.data = blk;
			blk += (st->ents[i].t.nbytes + 7) / 8 * 8;
		} else {
			st->ents[i].t.data = p;
		}
	}
	return 0;
}

static int finish_open(qc_st **out, qc_st *st, int rc)
{
	if (rc) {
		qc_st_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

int qc_st_open_mem(qc_st **out, void *buf, size_t len, int own, const char *name)
{
	*out = NULL;
	qc_st *st = st_new(name);
	if (!st) {
		if (own)
			free(buf);
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", name ? name : "<memory>");
	}
	st->image = buf;
	st->image_len = len;
	st->release = own ? 1 : 0;
	return finish_open(out, st, open_image(st));
}

int qc_st_open_mapped(qc_st **out, const void *map, size_t len, const char *name)
{
	*out = NULL;
	qc_st *st = st_new(name);
	if (!st) {
		qc_unmap(map, len);
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", name ? name : "<memory>");
	}
	st->image = map;
	st->image_len = len;
	st->release = 2;
	return finish_open(out, st, open_image(st));
}

int qc_st_open(qc_st **out, const char *path)
{
	const void *map;
	size_t len;
	*out = NULL;
	QC_TRY(qc_map(path, &map, &len));
	return qc_st_open_mapped(out, map, len, path);
}

int qc_st_open_header(qc_st **out, const void *json, size_t n, uint64_t file_size, const char *name)
{
	*out = NULL;
	qc_st *st = st_new(name);
	if (!st)
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", name ? name : "<stream>");
	int rc = 0;
	uint64_t len = n;
	unsigned char p[8];
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(len >> (8 * i));
	/* the same length checks, and messages, as a whole file gets */
	if (file_size < 8)
		rc = BAD(st, "truncated to %llu bytes (shorter than the 8-byte prefix)",
		         (unsigned long long)file_size);
	if (rc == 0)
		rc = prefix_check(p, file_size, &len, st->name);
	if (rc == 0)
		rc = parse_header(st, json, n, file_size);
	return finish_open(out, st, rc);
}

void qc_st_close(qc_st *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++)
		free((char *)st->ents[i].t.name);
	for (size_t i = 0; i < st->nmeta; i++) {
		free(st->mkey[i]);
		free(st->mval[i]);
	}
	free(st->mkey);
	free(st->mval);
	free(st->ents);
	free(st->by_name);
	free(st->aligned);
	if (st->release == 1)
		free((void *)st->image);
	else if (st->release == 2)
		qc_unmap(st->image, st->image_len);
	free(st->name);
	free(st);
}

const char *qc_st_name(const qc_st *st) { return st->name; }
size_t qc_st_count(const qc_st *st) { return st->n; }
uint64_t qc_st_file_size(const qc_st *st) { return st->file_size; }
uint64_t qc_st_header_size(const qc_st *st) { return st->header_size; }

const qc_tensor *qc_st_at(const qc_st *st, size_t i)
{
	return i < st->n ? &st->ents[i].t : NULL;
}

uint64_t qc_st_offset(const qc_st *st, size_t i)
{
	return i < st->n ? st->header_size + st->ents[i].begin : 0;
}

const qc_tensor *qc_st_find(const qc_st *st, const char *name)
{
	size_t lo = 0, hi = st->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, st->ents[st->by_name[mid]].t.name);
		if (c == 0)
			return &st->ents[st->by_name[mid]].t;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *qc_st_meta(const qc_st *st, const char *key)
{
	for (size_t i = 0; i < st->nmeta; i++)
		if (strcmp(st->mkey[i], key) == 0)
			return st->mval[i];
	return NULL;
}

size_t qc_st_meta_count(const qc_st *st) { return st->nmeta; }

void qc_st_meta_at(const qc_st *st, size_t i, const char **key, const char **value)
{
	*key = i < st->nmeta ? st->mkey[i] : NULL;
	*value = i < st->nmeta ? st->mval[i] : NULL;
}

// ---------------------------------------------------------------- writer

struct wt {
	char *name;
	qc_dtype dt;
	int ndim;
	int64_t shape[QC_MAX_DIMS];
	const void *data;
	int own;
	uint64_t nbytes;
};

struct qc_st_writer {
	struct wt *t;
	size_t n, cap;
	qc_strmap names;           /* tensor name -> index in t, to refuse duplicates */
	char **mkey, **mval;
	size_t nmeta, mcap;
	int laid_out;
	int declared;              /* qc_st_writer_declare was used: no data to emit */
	size_t *order;             /* layout order: indices into t */
	qc_tensor *views;          /* in layout order */
	char *header;              /* JSON padded to a multiple of 8 */
	size_t header_len;
	uint64_t file_size;
};

/* Rank of each dtype in the Rust Dtype enum, which is declared in increasing
 * alignment; the writer sorts by descending rank, then by name. */
static int rust_rank(qc_dtype dt)
{
	static const qc_dtype order[] = {
		QC_DT_BOOL, QC_DT_F4, QC_DT_F6_E2M3, QC_DT_F6_E3M2, QC_DT_U8, QC_DT_I8,
		QC_DT_F8_E5M2, QC_DT_F8_E4M3, QC_DT_F8_E8M0, QC_DT_F8_E4M3FNUZ, QC_DT_F8_E5M2FNUZ,
		QC_DT_I16, QC_DT_U16, QC_DT_F16, QC_DT_BF16, QC_DT_I32, QC_DT_U32, QC_DT_F32,
		QC_DT_C64, QC_DT_F64, QC_DT_I64, QC_DT_U64,
	};
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		if (order[i] == dt)
			return (int)i;
	return -1;
}

qc_st_writer *qc_st_writer_new(void)
{
	return calloc(1, sizeof(qc_st_writer));
}

void qc_st_writer_free(qc_st_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++) {
		free(w->t[i].name);
		if (w->t[i].own)
			free((void *)w->t[i].data);
	}
	for (size_t i = 0; i < w->nmeta; i++) {
		free(w->mkey[i]);
		free(w->mval[i]);
	}
	free(w->mkey);
	free(w->mval);
	free(w->t);
	qc_strmap_free(&w->names);
	free(w->order);
	free(w->views);
	free(w->header);
	free(w);
}

int qc_st_writer_meta(qc_st_writer *w, const char *key, const char *value)
{
	if (w->laid_out)
		return qc_seterr(QC_EINVAL, "cannot add metadata '%s': the layout is already fixed", key);
	for (size_t i = 0; i < w->nmeta; i++)
		if (strcmp(w->mkey[i], key) == 0) {
			char *v = strdup(value);
			if (!v)
				return qc_seterr(QC_ENOMEM, "out of memory");
			free(w->mval[i]);
			w->mval[i] = v;
			return 0;
		}
	size_t c = w->mcap;
	QC_TRY(qc_grow((void **)&w->mkey, &c, w->nmeta + 1, sizeof *w->mkey));
	QC_TRY(qc_grow((void **)&w->mval, &w->mcap, w->nmeta + 1, sizeof *w->mval));
	char *k = strdup(key), *v = strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	w->mkey[w->nmeta] = k;
	w->mval[w->nmeta] = v;
	w->nmeta++;
	return 0;
}

static int add_entry(qc_st_writer *w, const char *name, qc_dtype dt, int ndim,
                     const int64_t *shape, const void *data, int own, int declare);

int qc_st_writer_add(qc_st_writer *w, const char *name, qc_dtype dt, int ndim,
                     const int64_t *shape, const void *data, int own)
{
	return add_entry(w, name, dt, ndim, shape, data, own, 0);
}

int qc_st_writer_declare(qc_st_writer *w, const char *name, qc_dtype dt, int ndim,
                         const int64_t *shape)
{
	QC_TRY(add_entry(w, name, dt, ndim, shape, NULL, 0, 1));
	w->declared = 1;
	return 0;
}

static int add_entry(qc_st_writer *w, const char *name, qc_dtype dt, int ndim,
                     const int64_t *shape, const void *data, int own, int declare)
{
	int rc = 0;
	char sh[160] = "";
	if (w->laid_out) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': the layout is already fixed", name);
		goto fail;
	}
	if (!name || !*name || strcmp(name, "__metadata__") == 0) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': reserved or empty name", name ? name : "");
		goto fail;
	}
	if (rust_rank(dt) < 0) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': invalid dtype", name);
		goto fail;
	}
	if (ndim < 0 || ndim > QC_MAX_DIMS) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': %d dimensions", name, ndim);
		goto fail;
	}
	int64_t numel = qc_numel(ndim, shape);
	int64_t nbytes = numel < 0 ? -1 : qc_nbytes(dt, numel);
	if (nbytes < 0) {
		qc_shape_str(sh, sizeof sh, ndim, shape);
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': invalid shape %s for %s", name, sh,
		               qc_dtype_name(dt));
		goto fail;
	}
	if (nbytes > 0 && !data && !declare) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': no data", name);
		goto fail;
	}
	/* jansson refuses invalid UTF-8; find out now rather than at layout */
	json_t *probe = json_string(name);
	if (!probe) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor: name is not valid UTF-8");
		goto fail;
	}
	json_decref(probe);
	if (qc_strmap_get(&w->names, name, strlen(name)) >= 0) {
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': duplicate name", name);
		goto fail;
	}
	if ((rc = qc_grow((void **)&w->t, &w->cap, w->n + 1, sizeof *w->t)) != 0)
		goto fail;
	struct wt *t = &w->t[w->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	if (!t->name) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto fail;
	}
	t->dt = dt;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->data = data;
	t->own = own;
	t->nbytes = (uint64_t)nbytes;
	if ((rc = qc_strmap_put(&w->names, name, strlen(name), (int32_t)w->n)) != 0) {
		free(t->name);
		goto fail;
	}
	w->n++;
	return 0;
fail:
	if (own)
		free((void *)data);
	return rc;
}

static _Thread_local const struct wt *sort_wt;
static int cmp_layout(const void *a, const void *b)
{
	const struct wt *x = &sort_wt[*(const size_t *)a], *y = &sort_wt[*(const size_t *)b];
	int rx = rust_rank(x->dt), ry = rust_rank(y->dt);
	if (rx != ry)
		return rx > ry ? -1 : 1;
	return strcmp(x->name, y->name);
}
static _Thread_local char *const *sort_mkeys;
static int cmp_mkey(const void *a, const void *b)
{
	return strcmp(sort_mkeys[*(const size_t *)a], sort_mkeys[*(const size_t *)b]);
}

int qc_st_writer_layout(qc_st_writer *w, uint64_t *file_size)
{
	if (w->laid_out) {
		if (file_size)
			*file_size = w->file_size;
		return 0;
	}
	int rc = 0;
	json_t *root = json_object(), *meta = NULL;
	size_t *midx = NULL;
	char *js = NULL;
	w->order = malloc((w->n ? w->n : 1) * sizeof *w->order);
	w->views = calloc(w->n ? w->n : 1, sizeof *w->views);
	midx = malloc((w->nmeta ? w->nmeta : 1) * sizeof *midx);
	if (!root || !w->order || !w->views || !midx)
		goto nomem;
	for (size_t i = 0; i < w->n; i++)
		w->order[i] = i;
	sort_wt = w->t;
	qsort(w->order, w->n, sizeof *w->order, cmp_layout);

	/* "__metadata__" first with sorted keys, then the tensors in layout
	 * order: jansson keeps insertion order when dumping. */
	if (w->nmeta) {
		for (size_t i = 0; i < w->nmeta; i++)
			midx[i] = i;
		sort_mkeys = w->mkey;
		qsort(midx, w->nmeta, sizeof *midx, cmp_mkey);
		meta = json_object();
		if (!meta || json_object_set_new(root, "__metadata__", meta) != 0)
			goto nomem;
		for (size_t i = 0; i < w->nmeta; i++) {
			json_t *s = json_string(w->mval[midx[i]]);
			if (!s) {
				rc = qc_seterr(QC_EINVAL, "metadata '%s' is not valid UTF-8", w->mkey[midx[i]]);
				goto out;
			}
			if (json_object_set_new(meta, w->mkey[midx[i]], s) != 0)
				goto nomem;
		}
	}
	uint64_t off = 0;
	for (size_t k = 0; k < w->n; k++) {
		const struct wt *t = &w->t[w->order[k]];
		json_t *e = json_object(), *shape = json_array(), *offs = json_array();
		if (!e || !shape || !offs) {
			json_decref(e), json_decref(shape), json_decref(offs);
			goto nomem;
		}
		int bad = json_object_set_new(e, "dtype", json_string(qc_dtype_name(t->dt)));
		for (int i = 0; i < t->ndim; i++)
			bad |= json_array_append_new(shape, json_integer(t->shape[i]));
		bad |= json_object_set_new(e, "shape", shape);
		bad |= json_array_append_new(offs, json_integer((json_int_t)off));
		bad |= json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes)));
		bad |= json_object_set_new(e, "data_offsets", offs);
		bad |= json_object_set_new(root, t->name, e);
		if (bad)
			goto nomem;
		qc_tensor *v = &w->views[k];
		v->name = t->name;
		v->dtype = t->dt;
		v->ndim = t->ndim;
		memcpy(v->shape, t->shape, sizeof v->shape);
		v->data = t->data;
		v->nbytes = (size_t)t->nbytes;
		off += t->nbytes;
	}
	js = json_dumps(root, JSON_COMPACT);
	if (!js)
		goto nomem;
	size_t len = strlen(js), pad = (8 - len % 8) % 8;
	if (len + pad > QC_ST_MAX_HEADER) {
		rc = qc_seterr(QC_EINVAL, "safetensors header of %zu bytes is too large", len + pad);
		goto out;
	}
	w->header = malloc(len + pad + 1);
	if (!w->header)
		goto nomem;
	memcpy(w->header, js, len);
	memset(w->header + len, ' ', pad);
	w->header[len + pad] = 0;
	w->header_len = len + pad;
	w->file_size = 8 + (uint64_t)w->header_len + off;
	w->laid_out = 1;
	if (file_size)
		*file_size = w->file_size;
	goto out;
nomem:
	rc = qc_seterr(QC_ENOMEM, "cannot lay out safetensors file: out of memory");
out:
	if (rc) {
		free(w->order);
		free(w->views);
		w->order = NULL;
		w->views = NULL;
	}
	free(js);
	free(midx);
	json_decref(root);
	return rc;
}

size_t qc_st_writer_count(const qc_st_writer *w) { return w->n; }

const qc_tensor *qc_st_writer_at(const qc_st_writer *w, size_t i)
{
	return w->laid_out && i < w->n ? &w->views[i] : NULL;
}

int qc_st_writer_head(qc_st_writer *w, unsigned char prefix[8], const char **header,
                      size_t *header_len)
{
	QC_TRY(qc_st_writer_layout(w, NULL));
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)((uint64_t)w->header_len >> (8 * i));
	*header = w->header;
	*header_len = w->header_len;
	return 0;
}

int qc_st_writer_emit(qc_st_writer *w, qc_sink *sink)
{
	if (w->declared)
		return qc_seterr(QC_EINTERNAL, "cannot emit a safetensors layout that was only declared");
	QC_TRY(qc_st_writer_layout(w, NULL));
	unsigned char prefix[8];
	uint64_t n = w->header_len;
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)(n >> (8 * i));
	QC_TRY(qc_sink_write(sink, prefix, 8));
	QC_TRY(qc_sink_write(sink, w->header, w->header_len));
	for (size_t k = 0; k < w->n; k++)
		QC_TRY(qc_sink_write(sink, w->views[k].data, w->views[k].nbytes));
	return 0;
}

int qc_st_writer_save(qc_st_writer *w, const char *path)
{
	qc_atomic a;
	qc_sink s;
	QC_TRY(qc_st_writer_layout(w, NULL));
	QC_TRY(qc_atomic_open(&a, path));
	qc_sink_fd(&s, a.fd, path);
	int rc = qc_st_writer_emit(w, &s);
	if (rc) {
		qc_atomic_abort(&a);
		return rc;
	}
	return qc_atomic_commit(&a);
}
