/* qc_gguf.c - the GGUF container (see qc_gguf.h). */
#include "qc_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_strmap.h"

/* ---------------------------------------------------------------- writing */

typedef struct winfo {
	char name[QC_GGUF_MAX_NAME + 1];
	int type, ndim;
	int64_t ne[4];
	uint64_t bytes, offset;
} winfo;

struct qc_gguf_w {
	uint32_t align;
	int explicit_align;
	qc_membuf kv;          /* serialized pairs */
	uint64_t n_kv;
	char **keys;           /* for the duplicate check */
	winfo *t;
	size_t nt, cap;
	qc_sink *s;
	size_t cur;            /* tensor being written */
	uint64_t done;         /* its bytes so far */
	int begun;
};

static int mb_put(qc_membuf *b, const void *p, size_t n)
{
	qc_sink s;
	qc_sink_membuf(&s, b, "gguf metadata");
	return qc_sink_write(&s, p, n);
}

static int mb_u32(qc_membuf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	return mb_put(b, x, 4);
}

static int mb_u64(qc_membuf *b, uint64_t v)
{
	uint8_t x[8];
	for (int i = 0; i < 8; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	return mb_put(b, x, 8);
}

static int mb_str(qc_membuf *b, const char *s, size_t n)
{
	QC_TRY(mb_u64(b, n));
	return mb_put(b, s, n);
}

int qc_gguf_w_new(qc_gguf_w **out, uint32_t alignment)
{
	*out = NULL;
	if (alignment && (alignment & (alignment - 1)))
		return qc_seterr(QC_EINVAL, "GGUF alignment %u is not a power of two", alignment);
	qc_gguf_w *w = calloc(1, sizeof *w);
	if (!w)
		return qc_seterr(QC_ENOMEM, "out of memory");
	w->align = alignment ? alignment : QC_GGUF_DEFAULT_ALIGNMENT;
	w->explicit_align = alignment != 0;
	*out = w;
	if (w->explicit_align) {
		int rc = qc_gguf_w_u32(w, "general.alignment", alignment);
		if (rc) {
			qc_gguf_w_free(w);
			*out = NULL;
			return rc;
		}
	}
	return 0;
}

void qc_gguf_w_free(qc_gguf_w *w)
{
	if (!w)
		return;
	for (uint64_t i = 0; i < w->n_kv; i++)
		free(w->keys[i]);
	free(w->keys);
	free(w->t);
	qc_membuf_free(&w->kv);
	free(w);
}

static int key_begin(qc_gguf_w *w, const char *key, uint32_t type)
{
	if (w->begun)
		return qc_seterr(QC_EINVAL, "GGUF key '%s' added after the header was written", key);
	for (uint64_t i = 0; i < w->n_kv; i++)
		if (strcmp(w->keys[i], key) == 0)
			return qc_seterr(QC_EINVAL, "duplicate GGUF key '%s'", key);
	char **k = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *k);
	if (!k)
		return qc_seterr(QC_ENOMEM, "out of memory");
	w->keys = k;
	if (!(k[w->n_kv] = strdup(key)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	w->n_kv++;
	QC_TRY(mb_str(&w->kv, key, strlen(key)));
	return mb_u32(&w->kv, type);
}

int qc_gguf_w_str(qc_gguf_w *w, const char *key, const char *v)
{
	QC_TRY(key_begin(w, key, QC_GGUF_STRING));
	return mb_str(&w->kv, v, strlen(v));
}

int qc_gguf_w_u32(qc_gguf_w *w, const char *key, uint32_t v)
{
	QC_TRY(key_begin(w, key, QC_GGUF_U32));
	return mb_u32(&w->kv, v);
}

int qc_gguf_w_i32(qc_gguf_w *w, const char *key, int32_t v)
{
	QC_TRY(key_begin(w, key, QC_GGUF_I32));
	return mb_u32(&w->kv, (uint32_t)v);
}

int qc_gguf_w_f32(qc_gguf_w *w, const char *key, float v)
{
	QC_TRY(key_begin(w, key, QC_GGUF_F32));
	uint32_t u;
	memcpy(&u, &v, 4);
	return mb_u32(&w->kv, u);
}

int qc_gguf_w_bool(qc_gguf_w *w, const char *key, int v)
{
	QC_TRY(key_begin(w, key, QC_GGUF_BOOL));
	uint8_t b = v != 0;
	return mb_put(&w->kv, &b, 1);
}

int qc_gguf_w_arr_str(qc_gguf_w *w, const char *key, const char *const *v, const size_t *lens,
                      size_t n)
{
	QC_TRY(key_begin(w, key, QC_GGUF_ARRAY));
	QC_TRY(mb_u32(&w->kv, QC_GGUF_STRING));
	QC_TRY(mb_u64(&w->kv, n));
	for (size_t i = 0; i < n; i++)
		QC_TRY(mb_str(&w->kv, v[i], lens ? lens[i] : strlen(v[i])));
	return 0;
}

static int arr32(qc_gguf_w *w, const char *key, uint32_t et, const void *v, size_t n)
{
	QC_TRY(key_begin(w, key, QC_GGUF_ARRAY));
	QC_TRY(mb_u32(&w->kv, et));
	QC_TRY(mb_u64(&w->kv, n));
	const uint8_t *p = v;
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, p + 4 * i, 4);
		QC_TRY(mb_u32(&w->kv, u));
	}
	return 0;
}

int qc_gguf_w_arr_i32(qc_gguf_w *w, const char *key, const int32_t *v, size_t n)
{
	return arr32(w, key, QC_GGUF_I32, v, n);
}

int qc_gguf_w_arr_f32(qc_gguf_w *w, const char *key, const float *v, size_t n)
{
	return arr32(w, key, QC_GGUF_F32, v, n);
}

static uint64_t pad_to(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

int qc_gguf_w_tensor(qc_gguf_w *w, const char *name, int type, int ndim, const int64_t *ne)
{
	if (w->begun)
		return qc_seterr(QC_EINVAL, "GGUF tensor '%s' declared after the header", name);
	if (strlen(name) > QC_GGUF_MAX_NAME)
		return qc_seterr(QC_EINVAL, "GGUF tensor name '%s' is longer than %d bytes", name,
		                 QC_GGUF_MAX_NAME);
	if (ndim < 1 || ndim > 4)
		return qc_seterr(QC_EINVAL, "GGUF tensor '%s' has %d dims (1 to 4)", name, ndim);
	for (size_t i = 0; i < w->nt; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return qc_seterr(QC_EINVAL, "duplicate GGUF tensor '%s'", name);
	size_t row;
	int rc = qc_ggml_row_bytes(type, ne[0], &row);
	if (rc)
		return qc_errctx(rc, "GGUF tensor '%s'", name);
	uint64_t bytes = row;
	for (int d = 1; d < ndim; d++) {
		if (ne[d] < 1)
			return qc_seterr(QC_EINVAL, "GGUF tensor '%s' dim %d is %lld", name, d,
			                 (long long)ne[d]);
		bytes *= (uint64_t)ne[d];
	}
	if (w->nt == w->cap) {
		size_t c = w->cap ? 2 * w->cap : 64;
		winfo *t = realloc(w->t, c * sizeof *t);
		if (!t)
			return qc_seterr(QC_ENOMEM, "out of memory");
		w->t = t;
		w->cap = c;
	}
	winfo *t = &w->t[w->nt];
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	t->type = type;
	t->ndim = ndim;
	for (int d = 0; d < 4; d++)
		t->ne[d] = d < ndim ? ne[d] : 1;
	t->bytes = bytes;
	t->offset = w->nt ? pad_to(w->t[w->nt - 1].offset + w->t[w->nt - 1].bytes, w->align) : 0;
	w->nt++;
	return 0;
}

uint64_t qc_gguf_w_tensor_bytes(const qc_gguf_w *w, size_t i)
{
	return i < w->nt ? w->t[i].bytes : 0;
}

int qc_gguf_w_begin(qc_gguf_w *w, qc_sink *s)
{
	qc_membuf h = { 0 };
	int rc = mb_put(&h, "GGUF", 4);
	if (!rc) rc = mb_u32(&h, 3);
	if (!rc) rc = mb_u64(&h, w->nt);
	if (!rc) rc = mb_u64(&h, w->n_kv);
	if (!rc) rc = mb_put(&h, w->kv.data ? w->kv.data : (unsigned char *)"", w->kv.len);
	for (size_t i = 0; !rc && i < w->nt; i++) {
		const winfo *t = &w->t[i];
		rc = mb_str(&h, t->name, strlen(t->name));
		if (!rc) rc = mb_u32(&h, (uint32_t)t->ndim);
		for (int d = 0; !rc && d < t->ndim; d++)
			rc = mb_u64(&h, (uint64_t)t->ne[d]);
		if (!rc) rc = mb_u32(&h, (uint32_t)t->type);
		if (!rc) rc = mb_u64(&h, t->offset);
	}
	if (!rc) {
		rc = qc_sink_write(s, h.data, h.len);
		if (!rc)
			rc = qc_sink_zeros(s, (size_t)(pad_to(h.len, w->align) - h.len));
	}
	qc_membuf_free(&h);
	w->s = s;
	w->begun = 1;
	w->cur = 0;
	w->done = 0;
	return rc;
}

int qc_gguf_w_data(qc_gguf_w *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len) {
		if (!w->begun || w->cur >= w->nt)
			return qc_seterr(QC_EINVAL, "GGUF data beyond the declared tensors");
		winfo *t = &w->t[w->cur];
		uint64_t take = t->bytes - w->done < len ? t->bytes - w->done : len;
		QC_TRY(qc_sink_write(w->s, p, (size_t)take));
		p += take;
		len -= (size_t)take;
		w->done += take;
		if (w->done == t->bytes) {
			QC_TRY(qc_sink_zeros(w->s, (size_t)(pad_to(t->bytes, w->align) - t->bytes)));
			w->cur++;
			w->done = 0;
		}
	}
	return 0;
}

int qc_gguf_w_end(qc_gguf_w *w)
{
	/* a trailing empty tensor cannot exist (dims >= 1), so cur counts */
	if (!w->begun || w->cur != w->nt || w->done)
		return qc_seterr(QC_EINVAL, "GGUF data incomplete: %zu of %zu tensors written",
		                 w->cur, w->nt);
	return 0;
}

/* ---------------------------------------------------------------- reading */

typedef struct rkv {
	const char *key;
	size_t klen;
	int type;
	int atype;          /* arrays */
	uint64_t n;         /* arrays */
	const uint8_t *val; /* the value (arrays: the first element) */
} rkv;

struct qc_gguf {
	const uint8_t *data;
	size_t len;
	int mapped;
	char *name;
	uint32_t version, align;
	uint64_t data_start;
	rkv *kv;
	size_t nkv;
	qc_gguf_tensor *t;
	size_t nt;
	qc_strmap tmap;     /* tensor name -> index */
};

typedef struct cur {
	const uint8_t *p, *end, *base;
	const char *file;
} cur;

static int need(cur *c, uint64_t n, const char *what)
{
	if ((uint64_t)(c->end - c->p) < n)
		return qc_seterr(QC_EFORMAT, "'%s': %s runs past the end of the file (offset %lld)",
		                 c->file, what, (long long)(c->p - c->base));
	return 0;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static int get_u32c(cur *c, uint32_t *v, const char *what)
{
	QC_TRY(need(c, 4, what));
	*v = rd32(c->p);
	c->p += 4;
	return 0;
}

static int get_u64c(cur *c, uint64_t *v, const char *what)
{
	QC_TRY(need(c, 8, what));
	*v = rd64(c->p);
	c->p += 8;
	return 0;
}

static int get_strc(cur *c, const char **s, uint64_t *n, const char *what)
{
	QC_TRY(get_u64c(c, n, what));
	QC_TRY(need(c, *n, what));
	*s = (const char *)c->p;
	c->p += *n;
	return 0;
}

static int scalar_size(int type)
{
	switch (type) {
	case QC_GGUF_U8: case QC_GGUF_I8: case QC_GGUF_BOOL: return 1;
	case QC_GGUF_U16: case QC_GGUF_I16: return 2;
	case QC_GGUF_U32: case QC_GGUF_I32: case QC_GGUF_F32: return 4;
	case QC_GGUF_U64: case QC_GGUF_I64: case QC_GGUF_F64: return 8;
	default: return 0;
	}
}

static int skip_value(cur *c, int type, const char *key)
{
	if (type == QC_GGUF_STRING) {
		const char *s;
		uint64_t n;
		return get_strc(c, &s, &n, key);
	}
	int sz = scalar_size(type);
	if (!sz)
		return qc_seterr(QC_EFORMAT, "'%s': key '%s' has unknown value type %d", c->file, key,
		                 type);
	QC_TRY(need(c, (uint64_t)sz, key));
	if (type == QC_GGUF_BOOL && *c->p > 1)
		return qc_seterr(QC_EFORMAT, "'%s': bool key '%s' holds %u", c->file, key, *c->p);
	c->p += sz;
	return 0;
}

static int parse(qc_gguf *g)
{
	cur c = { g->data, g->data + g->len, g->data, g->name };
	uint64_t nt, nkv;
	QC_TRY(need(&c, 4, "the magic"));
	if (memcmp(c.p, "GGUF", 4) != 0)
		return qc_seterr(QC_EFORMAT, "'%s' is not a GGUF file (no GGUF magic)", g->name);
	c.p += 4;
	QC_TRY(get_u32c(&c, &g->version, "the version"));
	if (g->version != 2 && g->version != 3)
		return qc_seterr(QC_EFORMAT, "'%s': GGUF version %u (2 and 3 are read)", g->name,
		                 g->version);
	QC_TRY(get_u64c(&c, &nt, "the tensor count"));
	QC_TRY(get_u64c(&c, &nkv, "the key count"));
	/* each pair takes at least 12 bytes, each info at least 28 */
	if (nkv > g->len / 12 || nt > g->len / 28)
		return qc_seterr(QC_EFORMAT, "'%s': %llu keys and %llu tensors cannot fit in %zu bytes",
		                 g->name, (unsigned long long)nkv, (unsigned long long)nt, g->len);
	g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
	g->t = calloc(nt ? nt : 1, sizeof *g->t);
	if (!g->kv || !g->t)
		return qc_seterr(QC_ENOMEM, "out of memory");
	g->align = QC_GGUF_DEFAULT_ALIGNMENT;
	for (uint64_t i = 0; i < nkv; i++) {
		rkv *k = &g->kv[i];
		uint64_t kl;
		uint32_t ty;
		QC_TRY(get_strc(&c, &k->key, &kl, "a key"));
		k->klen = (size_t)kl;
		char key[256];
		snprintf(key, sizeof key, "%.*s", (int)(kl < 200 ? kl : 200), k->key);
		for (uint64_t j = 0; j < i; j++)
			if (g->kv[j].klen == k->klen && memcmp(g->kv[j].key, k->key, k->klen) == 0)
				return qc_seterr(QC_EFORMAT, "'%s': duplicate key '%s'", g->name, key);
		QC_TRY(get_u32c(&c, &ty, key));
		k->type = (int)ty;
		if (ty == QC_GGUF_ARRAY) {
			uint32_t at;
			QC_TRY(get_u32c(&c, &at, key));
			QC_TRY(get_u64c(&c, &k->n, key));
			k->atype = (int)at;
			k->val = c.p;
			if (at == QC_GGUF_ARRAY)
				return qc_seterr(QC_EFORMAT, "'%s': key '%s' is an array of arrays", g->name,
				                 key);
			if (at != QC_GGUF_STRING) {
				int sz = scalar_size((int)at);
				if (!sz)
					return qc_seterr(QC_EFORMAT, "'%s': key '%s' has unknown element type %u",
					                 g->name, key, at);
				if (k->n > (uint64_t)(c.end - c.p) / (uint64_t)sz)
					return need(&c, UINT64_MAX, key);
				c.p += k->n * (uint64_t)sz;
			} else {
				for (uint64_t j = 0; j < k->n; j++)
					QC_TRY(skip_value(&c, QC_GGUF_STRING, key));
			}
		} else {
			k->val = c.p;
			QC_TRY(skip_value(&c, (int)ty, key));
		}
		if (strcmp(key, "general.alignment") == 0) {
			if (ty != QC_GGUF_U32)
				return qc_seterr(QC_EFORMAT, "'%s': general.alignment is not a u32", g->name);
			g->align = rd32(k->val);
			if (g->align == 0 || (g->align & (g->align - 1)))
				return qc_seterr(QC_EFORMAT, "'%s': general.alignment %u is not a power of two",
				                 g->name, g->align);
		}
		g->nkv++;
	}
	uint64_t expect = 0;
	for (uint64_t i = 0; i < nt; i++) {
		qc_gguf_tensor *t = &g->t[i];
		const char *nm;
		uint64_t nl;
		uint32_t nd, ty;
		QC_TRY(get_strc(&c, &nm, &nl, "a tensor name"));
		if (nl > QC_GGUF_MAX_NAME)
			return qc_seterr(QC_EFORMAT, "'%s': tensor %llu's name is %llu bytes (at most %d)",
			                 g->name, (unsigned long long)i, (unsigned long long)nl,
			                 QC_GGUF_MAX_NAME);
		char *name = malloc(nl + 1);
		if (!name)
			return qc_seterr(QC_ENOMEM, "out of memory");
		memcpy(name, nm, nl);
		name[nl] = 0;
		t->name = name;
		g->nt++;
		if (qc_strmap_get(&g->tmap, name, nl) >= 0)
			return qc_seterr(QC_EFORMAT, "'%s': duplicate tensor '%s'", g->name, name);
		QC_TRY(qc_strmap_put(&g->tmap, name, nl, (int32_t)i));
		QC_TRY(get_u32c(&c, &nd, name));
		if (nd < 1 || nd > 4)
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' has %u dims (1 to 4)", g->name, name,
			                 nd);
		t->ndim = (int)nd;
		uint64_t elems = 1;
		for (int d = 0; d < 4; d++) {
			uint64_t v = 1;
			if (d < (int)nd)
				QC_TRY(get_u64c(&c, &v, name));
			if (v < 1 || v > (uint64_t)INT64_MAX / 2 || elems > UINT64_MAX / 2 / v)
				return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' dim %d is %llu", g->name, name, d,
				                 (unsigned long long)v);
			t->ne[d] = (int64_t)v;
			elems *= v;
		}
		QC_TRY(get_u32c(&c, &ty, name));
		t->type = (int)ty;
		size_t row;
		if (!qc_ggml_type_name((int)ty))
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' has ggml type %u, which is not read "
			                 "here", g->name, name, ty);
		if (qc_ggml_row_bytes((int)ty, t->ne[0], &row))
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s': ne[0] %lld is not a multiple of "
			                 "%s's block of %lld", g->name, name, (long long)t->ne[0],
			                 qc_ggml_type_name((int)ty), (long long)qc_ggml_block_elems((int)ty));
		t->bytes = (uint64_t)row * (elems / (uint64_t)t->ne[0]);
		QC_TRY(get_u64c(&c, &t->offset, name));
		if (t->offset != expect)
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' at offset %llu, expected %llu "
			                 "(offsets run back to back, each padded to %u)", g->name, name,
			                 (unsigned long long)t->offset, (unsigned long long)expect, g->align);
		expect = pad_to(t->offset + t->bytes, g->align);
	}
	g->data_start = pad_to((uint64_t)(c.p - g->data), g->align);
	/* gguf.cpp reads the data as one block of the padded total */
	if (g->data_start > g->len || expect > g->len - g->data_start)
		return qc_seterr(QC_EFORMAT, "'%s': the tensor data (%llu bytes from %llu) runs past "
		                 "the end of the file (%zu bytes)", g->name, (unsigned long long)expect,
		                 (unsigned long long)g->data_start, g->len);
	for (size_t i = 0; i < g->nt; i++) {
		qc_gguf_tensor *t = &g->t[i];
		if (g->data_start > g->len || t->offset > g->len - g->data_start ||
		    t->bytes > g->len - g->data_start - t->offset)
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' (%llu bytes at %llu) runs past the "
			                 "end of the file", g->name, t->name, (unsigned long long)t->bytes,
			                 (unsigned long long)(g->data_start + t->offset));
		t->data = g->data + g->data_start + t->offset;
	}
	return 0;
}

static int open_common(qc_gguf **out, const void *data, size_t len, const char *name, int mapped)
{
	qc_gguf *g = calloc(1, sizeof *g);
	if (!g)
		return qc_seterr(QC_ENOMEM, "out of memory");
	g->data = data;
	g->len = len;
	g->mapped = mapped;
	g->name = strdup(name);
	if (!g->name) {
		free(g);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	int rc = parse(g);
	if (rc) {
		g->mapped = 0;   /* the caller unmaps */
		qc_gguf_close(g);
		return rc;
	}
	*out = g;
	return 0;
}

int qc_gguf_open_mem(qc_gguf **g, const void *data, size_t len, const char *name)
{
	*g = NULL;
	return open_common(g, data, len, name, 0);
}

int qc_gguf_open(qc_gguf **g, const char *path)
{
	*g = NULL;
	const void *d;
	size_t n;
	QC_TRY(qc_map(path, &d, &n));
	int rc = open_common(g, d, n, path, 1);
	if (rc)
		qc_unmap(d, n);
	return rc;
}

void qc_gguf_close(qc_gguf *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nt; i++)
		free((char *)g->t[i].name);
	free(g->t);
	free(g->kv);
	qc_strmap_free(&g->tmap);
	if (g->mapped)
		qc_unmap(g->data, g->len);
	free(g->name);
	free(g);
}

uint32_t qc_gguf_version(const qc_gguf *g) { return g->version; }
uint32_t qc_gguf_alignment(const qc_gguf *g) { return g->align; }
uint64_t qc_gguf_data_start(const qc_gguf *g) { return g->data_start; }
size_t qc_gguf_n_kv(const qc_gguf *g) { return g->nkv; }
const char *qc_gguf_key(const qc_gguf *g, size_t i) { return g->kv[i].key; }
int qc_gguf_kv_type(const qc_gguf *g, size_t i) { return g->kv[i].type; }
int qc_gguf_arr_type(const qc_gguf *g, size_t i) { return g->kv[i].atype; }
uint64_t qc_gguf_arr_n(const qc_gguf *g, size_t i) { return g->kv[i].n; }
size_t qc_gguf_n_tensors(const qc_gguf *g) { return g->nt; }
const qc_gguf_tensor *qc_gguf_tensor_at(const qc_gguf *g, size_t i) { return &g->t[i]; }

const qc_gguf_tensor *qc_gguf_tensor_find(const qc_gguf *g, const char *name)
{
	int32_t i = qc_strmap_get(&g->tmap, name, strlen(name));
	return i < 0 ? NULL : &g->t[i];
}

int64_t qc_gguf_find(const qc_gguf *g, const char *key)
{
	size_t n = strlen(key);
	for (size_t i = 0; i < g->nkv; i++)
		if (g->kv[i].klen == n && memcmp(g->kv[i].key, key, n) == 0)
			return (int64_t)i;
	return -1;
}

static const char *tname(int t)
{
	static const char *n[] = { "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string",
	                           "array", "u64", "i64", "f64" };
	return t >= 0 && t <= 12 ? n[t] : "?";
}

static int typed(const qc_gguf *g, const char *key, int type, int atype, const rkv **k)
{
	int64_t i = qc_gguf_find(g, key);
	if (i < 0)
		return qc_seterr(QC_ENOTFOUND, "'%s': no key '%s'", g->name, key);
	*k = &g->kv[i];
	if ((*k)->type != type || (type == QC_GGUF_ARRAY && (*k)->atype != atype))
		return qc_seterr(QC_EFORMAT, "'%s': key '%s' has type %s%s%s, expected %s%s%s", g->name,
		                 key, tname((*k)->type), (*k)->type == QC_GGUF_ARRAY ? " of " : "",
		                 (*k)->type == QC_GGUF_ARRAY ? tname((*k)->atype) : "", tname(type),
		                 type == QC_GGUF_ARRAY ? " of " : "", type == QC_GGUF_ARRAY ? tname(atype) : "");
	return 0;
}

int qc_gguf_get_u32(const qc_gguf *g, const char *key, uint32_t *v)
{
	const rkv *k;
	QC_TRY(typed(g, key, QC_GGUF_U32, 0, &k));
	*v = rd32(k->val);
	return 0;
}

int qc_gguf_get_f32(const qc_gguf *g, const char *key, float *v)
{
	const rkv *k;
	QC_TRY(typed(g, key, QC_GGUF_F32, 0, &k));
	uint32_t u = rd32(k->val);
	memcpy(v, &u, 4);
	return 0;
}

int qc_gguf_get_bool(const qc_gguf *g, const char *key, int *v)
{
	const rkv *k;
	QC_TRY(typed(g, key, QC_GGUF_BOOL, 0, &k));
	*v = k->val[0];
	return 0;
}

int qc_gguf_get_str(const qc_gguf *g, const char *key, const char **s, size_t *len)
{
	const rkv *k;
	QC_TRY(typed(g, key, QC_GGUF_STRING, 0, &k));
	*len = (size_t)rd64(k->val);
	*s = (const char *)k->val + 8;
	return 0;
}

int qc_gguf_arr_str(const qc_gguf *g, const char *key, uint64_t j, const char **s, size_t *len)
{
	const rkv *k;
	QC_TRY(typed(g, key, QC_GGUF_ARRAY, QC_GGUF_STRING, &k));
	if (j >= k->n)
		return qc_seterr(QC_EINVAL, "'%s': %s has %llu elements, not %llu", g->name, key,
		                 (unsigned long long)k->n, (unsigned long long)j + 1);
	/* strings are variable length: walk (callers read them in order; the
	 * packer's tests and qverify read each array once) */
	const uint8_t *p = k->val;
	for (uint64_t i = 0; i < j; i++)
		p += 8 + rd64(p);
	*len = (size_t)rd64(p);
	*s = (const char *)p + 8;
	return 0;
}

static int arr_elem32(const qc_gguf *g, const char *key, int at, uint64_t j, uint32_t *u)
{
	const rkv *k;
	QC_TRY(typed(g, key, QC_GGUF_ARRAY, at, &k));
	if (j >= k->n)
		return qc_seterr(QC_EINVAL, "'%s': %s has %llu elements, not %llu", g->name, key,
		                 (unsigned long long)k->n, (unsigned long long)j + 1);
	*u = rd32(k->val + 4 * j);
	return 0;
}

int qc_gguf_arr_i32(const qc_gguf *g, const char *key, uint64_t j, int32_t *v)
{
	uint32_t u = 0;
	QC_TRY(arr_elem32(g, key, QC_GGUF_I32, j, &u));
	*v = (int32_t)u;
	return 0;
}

int qc_gguf_arr_f32(const qc_gguf *g, const char *key, uint64_t j, float *v)
{
	uint32_t u = 0;
	QC_TRY(arr_elem32(g, key, QC_GGUF_F32, j, &u));
	memcpy(v, &u, 4);
	return 0;
}
