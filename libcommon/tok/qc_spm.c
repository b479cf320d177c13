/*
 * qc_spm.c - a bounded protobuf reader and writer for SentencePiece model
 * files (see qc_spm.h for the fields). Protobuf wire format: each field is a
 * varint key (field number << 3 | wire type) then, by wire type, a varint
 * (0), 8 bytes (1), a varint length and that many bytes (2) or 4 bytes (5).
 */
#include "qc_spm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_vec.h"

#define MAX_PIECE_LEN 8000        /* SentencePiece refuses longer pieces */

typedef struct rd {
	const unsigned char *p, *end;
} rd;

typedef struct ctx {
	const char *name;
	const char *what;         /* message being read, for errors */
	int64_t index;            /* piece index, or -1 */
	int64_t next_piece;       /* top level: the index field 1 would have */
} ctx;

static int bad(const ctx *c, const char *why)
{
	if (c->index >= 0)
		return qc_seterr(QC_EFORMAT, "bad tokenizer.model '%s': %s %lld: %s", c->name, c->what,
		                 (long long)c->index, why);
	return qc_seterr(QC_EFORMAT, "bad tokenizer.model '%s': %s: %s", c->name, c->what, why);
}

/* An error in field num of the message being read; at the top level field 1
 * is named as the piece it holds. */
static int bad_field(const ctx *c, uint32_t num, const char *why)
{
	char w[96];
	if (c->index < 0 && num == 1)
		snprintf(w, sizeof w, "piece %lld: %s", (long long)c->next_piece, why);
	else
		snprintf(w, sizeof w, "field %u: %s", (unsigned)num, why);
	return bad(c, w);
}

static int varint(const ctx *c, rd *r, uint64_t *v)
{
	uint64_t x = 0;
	for (int i = 0; i < 10; i++) {
		if (r->p >= r->end)
			return bad(c, "varint runs past the end");
		unsigned b = *r->p++;
		if (i == 9 && b > 1)
			return bad(c, "varint longer than 64 bits");
		x |= (uint64_t)(b & 0x7F) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return bad(c, "varint longer than 10 bytes");
}

/* One field: its number, wire type, and value (a varint in v, or the bytes
 * [s, s + n) for length-delimited and fixed-size fields). */
typedef struct fld {
	uint32_t num;
	int wt;
	uint64_t v;
	const unsigned char *s;
	size_t n;
} fld;

static int field(const ctx *c, rd *r, fld *f)
{
	uint64_t key;
	*f = (fld){ 0, 0, 0, NULL, 0 };
	QC_TRY(varint(c, r, &key));
	f->wt = (int)(key & 7);
	if ((key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF)
		return bad(c, "bad field number");
	f->num = (uint32_t)(key >> 3);
	size_t left = (size_t)(r->end - r->p);
	switch (f->wt) {
	case 0:
		return varint(c, r, &f->v);
	case 1:
	case 5: {
		size_t k = f->wt == 1 ? 8 : 4;
		if (left < k)
			return bad_field(c, f->num, "runs past the end");
		f->s = r->p;
		f->n = k;
		r->p += k;
		return 0;
	}
	case 2:
		QC_TRY(varint(c, r, &f->v));
		left = (size_t)(r->end - r->p);
		if (f->v > left)
			return bad_field(c, f->num, "length runs past the end");
		f->s = r->p;
		f->n = (size_t)f->v;
		r->p += f->n;
		return 0;
	default:
		return bad(c, "unsupported wire type (groups are not used by this format)");
	}
}

static float le_float(const unsigned char *s)
{
	uint32_t u = (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Copy the bytes into the arena (NUL-terminated); *off their offset. */
static int arena_add(char **a, size_t *n, size_t *cap, const unsigned char *s, size_t len, size_t *off)
{
	QC_TRY(qc_grow((void **)a, cap, *n + len + 1, 1));
	memcpy(*a + *n, s, len);
	(*a)[*n + len] = 0;
	*off = *n;
	*n += len + 1;
	return 0;
}

static int parse_piece(const ctx *c, const unsigned char *s, size_t n, qc_spm_piece *p,
                       size_t *off, char **arena, size_t *an, size_t *acap)
{
	rd r = { s, s + n };
	int have = 0;
	p->type = QC_SPM_NORMAL;
	p->score = 0;
	while (r.p < r.end) {
		fld f;
		QC_TRY(field(c, &r, &f));
		uint32_t num = f.num;
		int wt = f.wt;
		uint64_t v = f.v;
		const unsigned char *b = f.s;
		size_t bn = f.n;
		if (num == 1 && wt == 2) {
			if (bn == 0)
				return bad(c, "empty piece");
			if (bn >= MAX_PIECE_LEN)
				return bad(c, "piece longer than 8000 bytes");
			if (memchr(b, 0, bn))
				return bad(c, "piece holds a NUL byte");
			QC_TRY(arena_add(arena, an, acap, b, bn, off));
			p->len = (uint32_t)bn;
			have = 1;
		} else if (num == 2 && wt == 5) {
			p->score = le_float(b);
		} else if (num == 3 && wt == 0) {
			if (v < 1 || v > 6)
				return bad(c, "unknown piece type");
			p->type = (int)v;
		} else if (num <= 3) {
			return bad(c, "field of the wrong wire type");
		}
	}
	if (!have)
		return bad(c, "piece without its string");
	return 0;
}

static int parse_trainer(const ctx *c, const unsigned char *s, size_t n, qc_spm *m)
{
	rd r = { s, s + n };
	while (r.p < r.end) {
		fld f;
		QC_TRY(field(c, &r, &f));
		int known = f.num == 3 || f.num == 24 || f.num == 35 || (f.num >= 40 && f.num <= 42);
		if (!known)
			continue;
		if (f.wt != 0)
			return bad(c, "field of the wrong wire type");
		/* int32 fields: negative values are ten-byte two's complement */
		int64_t iv = (int64_t)(int32_t)(uint32_t)f.v;
		switch (f.num) {
		case 3: m->model_type = (int)iv; break;
		case 24: m->treat_ws_as_suffix = f.v != 0; break;
		case 35: m->byte_fallback = f.v != 0; break;
		case 40: m->unk_id = iv; break;
		case 41: m->bos_id = iv; break;
		case 42: m->eos_id = iv; break;
		}
	}
	return 0;
}

static int parse_normalizer(const ctx *c, const unsigned char *s, size_t n, qc_spm *m)
{
	rd r = { s, s + n };
	while (r.p < r.end) {
		fld f;
		QC_TRY(field(c, &r, &f));
		if (f.num > 5)
			continue;
		if ((f.num <= 2 && f.wt != 2) || (f.num >= 3 && f.wt != 0))
			return bad(c, "field of the wrong wire type");
		switch (f.num) {
		case 1: {
			size_t k = f.n < sizeof m->name - 1 ? f.n : sizeof m->name - 1;
			memcpy(m->name, f.s, k);
			m->name[k] = 0;
			if (memchr(m->name, 0, k))
				return bad(c, "name holds a NUL byte");
			break;
		}
		case 2: m->charsmap_len = f.n; break;
		case 3: m->add_dummy_prefix = f.v != 0; break;
		case 4: m->remove_extra_ws = f.v != 0; break;
		case 5: m->escape_ws = f.v != 0; break;
		}
	}
	return 0;
}

void qc_spm_free(qc_spm *m)
{
	if (!m)
		return;
	free(m->pieces);
	free(m->arena);
	free(m);
}

int qc_spm_parse(qc_spm **out, const void *data, size_t len, const char *name)
{
	*out = NULL;
	ctx c = { name ? name : "tokenizer.model", "model", -1, 0 };
	if (len > QC_SPM_MAX_FILE)
		return bad(&c, "file too large");
	qc_spm *m = calloc(1, sizeof *m);
	if (!m)
		return qc_seterr(QC_ENOMEM, "out of memory reading '%s'", c.name);
	m->model_type = QC_SPM_UNIGRAM;
	m->unk_id = 0;
	m->bos_id = 1;
	m->eos_id = 2;
	m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = 1;
	size_t *offs = NULL, pcap = 0, ocap = 0, an = 0, acap = 0;
	int rc = 0;
	rd r = { data, (const unsigned char *)data + len };
	while (rc == 0 && r.p < r.end) {
		fld f;
		c.what = "model";
		c.index = -1;
		c.next_piece = m->n_pieces;
		if ((rc = field(&c, &r, &f)) < 0)
			break;
		uint32_t num = f.num;
		int wt = f.wt;
		const unsigned char *b = f.s;
		size_t bn = f.n;
		if (num > 3)
			continue;
		if (wt != 2) {
			rc = bad(&c, "field of the wrong wire type");
			break;
		}
		if (num == 1) {
			if (m->n_pieces >= QC_SPM_MAX_PIECES) {
				rc = bad(&c, "too many pieces");
				break;
			}
			if ((rc = qc_grow((void **)&m->pieces, &pcap, (size_t)m->n_pieces + 1, sizeof *m->pieces)) < 0 ||
			    (rc = qc_grow((void **)&offs, &ocap, (size_t)m->n_pieces + 1, sizeof *offs)) < 0)
				break;
			c.what = "piece";
			c.index = m->n_pieces;
			rc = parse_piece(&c, b, bn, &m->pieces[m->n_pieces], &offs[m->n_pieces], &m->arena, &an, &acap);
			m->n_pieces++;
		} else if (num == 2) {
			c.what = "trainer_spec";
			rc = parse_trainer(&c, b, bn, m);
		} else {
			c.what = "normalizer_spec";
			rc = parse_normalizer(&c, b, bn, m);
		}
	}
	if (rc == 0 && m->n_pieces == 0)
		rc = bad(&c, "no pieces");
	if (rc == 0)   /* the arena has stopped moving: point the pieces into it */
		for (int64_t i = 0; i < m->n_pieces; i++)
			m->pieces[i].s = m->arena + offs[i];
	free(offs);
	if (rc < 0) {
		qc_spm_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* writer                                                                    */

typedef struct wbuf {
	char *p;
	size_t n, cap;
} wbuf;

static int put_bytes(wbuf *w, const void *s, size_t n)
{
	QC_TRY(qc_grow((void **)&w->p, &w->cap, w->n + n, 1));
	memcpy(w->p + w->n, s, n);
	w->n += n;
	return 0;
}

static int put_varint(wbuf *w, uint64_t v)
{
	unsigned char b[10];
	size_t k = 0;
	do {
		b[k] = (unsigned char)(v & 0x7F);
		v >>= 7;
		if (v)
			b[k] |= 0x80;
		k++;
	} while (v);
	return put_bytes(w, b, k);
}

static int put_key(wbuf *w, uint32_t num, int wt) { return put_varint(w, (uint64_t)num << 3 | (unsigned)wt); }

static int put_int(wbuf *w, uint32_t num, int64_t v)
{
	QC_TRY(put_key(w, num, 0));
	/* int32: negative values sign-extend to 64 bits, as protobuf writes them */
	return put_varint(w, (uint64_t)(int64_t)(int32_t)v);
}

static int put_len(wbuf *w, uint32_t num, const void *s, size_t n)
{
	QC_TRY(put_key(w, num, 2));
	QC_TRY(put_varint(w, n));
	return put_bytes(w, s, n);
}

int qc_spm_write(const qc_spm *m, char **data, size_t *len)
{
	wbuf w = { 0 }, sub = { 0 };
	int rc = 0;
	*data = NULL;
	*len = 0;
	for (int64_t i = 0; i < m->n_pieces && rc == 0; i++) {
		const qc_spm_piece *p = &m->pieces[i];
		unsigned char f[4];
		uint32_t u;
		memcpy(&u, &p->score, sizeof u);
		for (int k = 0; k < 4; k++)
			f[k] = (unsigned char)(u >> (8 * k));
		sub.n = 0;
		if ((rc = put_len(&sub, 1, p->s, p->len)) < 0 || (rc = put_key(&sub, 2, 5)) < 0 ||
		    (rc = put_bytes(&sub, f, 4)) < 0 || (rc = put_int(&sub, 3, p->type)) < 0)
			break;
		rc = put_len(&w, 1, sub.p, sub.n);
	}
	if (rc == 0) {
		sub.n = 0;
		if ((rc = put_int(&sub, 3, m->model_type)) == 0 && (rc = put_int(&sub, 24, m->treat_ws_as_suffix)) == 0 &&
		    (rc = put_int(&sub, 35, m->byte_fallback)) == 0 && (rc = put_int(&sub, 40, m->unk_id)) == 0 &&
		    (rc = put_int(&sub, 41, m->bos_id)) == 0 && (rc = put_int(&sub, 42, m->eos_id)) == 0)
			rc = put_len(&w, 2, sub.p, sub.n);
	}
	if (rc == 0) {
		sub.n = 0;
		if ((rc = put_len(&sub, 1, m->name, strlen(m->name))) == 0 &&
		    (rc = put_int(&sub, 3, m->add_dummy_prefix)) == 0 &&
		    (rc = put_int(&sub, 4, m->remove_extra_ws)) == 0 && (rc = put_int(&sub, 5, m->escape_ws)) == 0)
			rc = put_len(&w, 3, sub.p, sub.n);
	}
	free(sub.p);
	if (rc < 0) {
		free(w.p);
		return rc;
	}
	*data = w.p;
	*len = w.n;
	return 0;
}
