/* qc_ckpt_layout.c - the layout rules of a checkpoint that the reader
 * (qc_ckpt.c) and the writer (qc_ckpt_write.c) share: member ranks, tensor
 * groups, the layer-order rule, shard names, the one-pass hash walk (see
 * qc_ckpt_int.h). */
#include "qc_ckpt.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_ckpt_int.h"
#include "qc_err.h"
#include "qc_st.h"

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

int qc_ckpt__rank(const char *name)
{
	if (strcmp(name, "config.json") == 0)
		return QC_RANK_CONFIG;
	if (strcmp(name, QC_MANIFEST_NAME) == 0)
		return QC_RANK_MANIFEST;
	if (strcmp(name, QC_CKPT_INDEX_NAME) == 0)
		return QC_RANK_INDEX;
	if (ends_with(name, ".safetensors"))
		return QC_RANK_SHARD;
	if (ends_with(name, ".jsonl"))
		return QC_RANK_REPORT;
	return QC_RANK_SMALL;
}

int qc_ckpt_group_of(const char *name)
{
	static const char lay[] = "model.layers.", emb[] = "model.embed_tokens.";
	if (strncmp(name, emb, sizeof emb - 1) == 0)
		return QC_GROUP_PRE;
	if (strncmp(name, lay, sizeof lay - 1) != 0)
		return QC_GROUP_POST;
	const char *p = name + sizeof lay - 1;
	long v = 0;
	if (*p < '0' || *p > '9')
		return QC_GROUP_POST;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v >= QC_GROUP_POST)
			return QC_GROUP_POST;
	}
	return *p == '.' && p[1] ? (int)v : QC_GROUP_POST;
}

const char *qc_ckpt__group_desc(int g, char buf[48])
{
	if (g == QC_GROUP_PRE)
		snprintf(buf, 48, "the embeddings");
	else if (g == QC_GROUP_POST)
		snprintf(buf, 48, "the final norm and lm_head");
	else
		snprintf(buf, 48, "layer %d", g);
	return buf;
}

/* "qc.groups_complete" metadata: 0 with *g, 1 when absent, -1 when bad. */
static int meta_groups(const char *v, int *g)
{
	if (!v)
		return 1;
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < QC_GROUP_PRE - 1 || x > QC_GROUP_POST)
		return -1;
	*g = (int)x;
	return 0;
}

int qc_ckpt__order_names(int *complete, const qc_tensor *t, size_t n, int groups_complete,
                         size_t *bad)
{
	int hi = INT_MIN;
	for (size_t i = 0; i < n; i++) {
		int g = qc_ckpt_group_of(t[i].name);
		if (g <= *complete) {
			*bad = i;
			return -1;
		}
		if (g > hi)
			hi = g;
	}
	if (n && hi - 1 > *complete)
		*complete = hi - 1;
	if (groups_complete > *complete)
		*complete = groups_complete;
	return 0;
}

int qc_ckpt__order(int *complete, const qc_st *st, size_t *bad, int *lo, int *hi)
{
	int gc = QC_GROUP_PRE - 1;
	if (meta_groups(qc_st_meta(st, QC_CKPT_META_GROUPS), &gc) < 0)
		return -2;
	int l = INT_MAX, h = INT_MIN;
	size_t n = qc_st_count(st);
	for (size_t i = 0; i < n; i++) {
		int g = qc_ckpt_group_of(qc_st_at(st, i)->name);
		if (g <= *complete) {
			*bad = i;
			return -1;
		}
		l = g < l ? g : l;
		h = g > h ? g : h;
	}
	if (n && h - 1 > *complete)
		*complete = h - 1;
	if (gc > *complete)
		*complete = gc;
	if (lo)
		*lo = n ? l : INT_MAX;
	if (hi)
		*hi = n ? h : INT_MIN;
	return 0;
}

int qc_hwalk_init(qc_hwalk *w, const qc_st *st, int file, int tensors)
{
	memset(w, 0, sizeof *w);
	w->st = st;
	size_t n = qc_st_count(st);
	if (file && !(w->file = qc_hasher_new()))
		goto nomem;
	if (tensors) {
		w->t = qc_hasher64_new();
		w->out = calloc(n ? n : 1, sizeof *w->out);
		if (!w->t || !w->out)
			goto nomem;
	}
	return 0;
nomem:
	qc_hwalk_release(w);
	return qc_seterr(QC_ENOMEM, "cannot hash '%s': out of memory", qc_st_name(st));
}

/* Close every tensor that ends at or before the current position. */
static void hw_close_done(qc_hwalk *w)
{
	size_t n = qc_st_count(w->st);
	while (w->ti < n) {
		uint64_t end = qc_st_offset(w->st, w->ti) + qc_st_at(w->st, w->ti)->nbytes;
		if (end > w->pos)
			break;
		w->out[w->ti++] = qc_hasher64_digest(w->t);
		qc_hasher64_reset(w->t);
	}
}

void qc_hwalk_feed(qc_hwalk *w, const void *data, size_t len)
{
	const unsigned char *p = data;
	if (w->file)
		qc_hasher_update(w->file, p, len);
	if (!w->t) {
		w->pos += len;
		return;
	}
	size_t n = qc_st_count(w->st);
	while (len > 0) {
		hw_close_done(w);
		if (w->ti >= n) {
			w->pos += len;
			return;
		}
		uint64_t b = qc_st_offset(w->st, w->ti), e = b + qc_st_at(w->st, w->ti)->nbytes;
		if (w->pos < b) {       /* header bytes before the first tensor */
			size_t k = b - w->pos < len ? (size_t)(b - w->pos) : len;
			p += k, len -= k, w->pos += k;
			continue;
		}
		size_t k = e - w->pos < len ? (size_t)(e - w->pos) : len;
		qc_hasher64_update(w->t, p, k);
		p += k, len -= k, w->pos += k;
	}
	hw_close_done(w);
}

void qc_hwalk_finish(qc_hwalk *w, qc_h128 *fh)
{
	if (w->t)
		hw_close_done(w);
	if (fh && w->file)
		*fh = qc_hasher_digest128(w->file);
}

void qc_hwalk_release(qc_hwalk *w)
{
	qc_hasher_free(w->file);
	qc_hasher64_free(w->t);
	free(w->out);
	memset(w, 0, sizeof *w);
}

void qc_ckpt_shard_name(char out[64], int k, int n)
{
	if (n == 1)
		snprintf(out, 64, "model.safetensors");
	else
		snprintf(out, 64, "model-%05d-of-%05d.safetensors", k, n);
}
