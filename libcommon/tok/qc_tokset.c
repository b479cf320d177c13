/* qc_tokset.c - token set files: validating reader, writer through qc_st
 * (see qc_tokset.h). */
#include "qc_tokset.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_st.h"
#include "qc_vec.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token sets are read in place: little-endian hosts only");

struct qc_tokset {
	qc_st *st;
	const void *image;        /* the whole file */
	size_t image_len;
	int mapped;               /* image came from qc_map (else malloc'd) */
	int64_t n, l, n_tokens, vocab;
	const int32_t *ids, *lengths;
	qc_h128 hash;
};

/* Keys every token set carries besides "format". */
static const char *const required[] = {
	"qc_token_set", "tokenizer_xxh3_128", "vocab_size", "pad_id", "bos_id", "eos_id",
	"seed", "sources", "options", "n_tokens",
};

/* ------------------------------------------------------------------------ */
/* shared checks                                                             */

/* Lengths in [0, l] and every valid id in [0, vocab). ids is [n, l]. On
 * failure *bad_row gets the row and the return is 1 (lengths) or 2 (ids). */
static int check_rows(int64_t n, int64_t l, const int32_t *ids, const int32_t *lengths, int64_t vocab,
                      int64_t *bad_row, int64_t *total)
{
	*total = 0;
	for (int64_t i = 0; i < n; i++) {
		if (lengths[i] < 0 || lengths[i] > l) {
			*bad_row = i;
			return 1;
		}
		const int32_t *r = ids + i * l;
		for (int32_t j = 0; j < lengths[i]; j++)
			if (r[j] < 0 || r[j] >= vocab) {
				*bad_row = i;
				return 2;
			}
		*total += lengths[i];
	}
	return 0;
}

/* A decimal int64 metadata value, whole string. */
static int parse_i64(const char *s, int64_t *v)
{
	char *end;
	if (!s || !*s)
		return -1;
	long long x = strtoll(s, &end, 10);
	if (*end)
		return -1;
	*v = x;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* reading                                                                   */

void qc_tokset_close(qc_tokset *ts)
{
	if (!ts)
		return;
	qc_st_close(ts->st);
	if (ts->mapped)
		qc_unmap(ts->image, ts->image_len);
	else
		free((void *)ts->image);
	free(ts);
}

static int validate(qc_tokset *ts, const char *name)
{
	const qc_st *st = ts->st;
	const qc_tensor *ids = qc_st_find(st, "input_ids"), *len = qc_st_find(st, "lengths");
	if (!ids || !len || qc_st_count(st) != 2)
		return qc_seterr(QC_EFORMAT, "'%s' is not a token set: it must hold exactly 'input_ids' and 'lengths'",
		                 name);
	if (ids->dtype != QC_DT_I32 || ids->ndim != 2 || len->dtype != QC_DT_I32 || len->ndim != 1)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': input_ids must be I32 [N, L] and lengths I32 [N]",
		                 name);
	ts->n = ids->shape[0];
	ts->l = ids->shape[1];
	if (ts->n < 1 || ts->l < 1 || len->shape[0] != ts->n)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': shapes [%" PRId64 ", %" PRId64 "] and [%" PRId64 "]",
		                 name, ts->n, ts->l, len->shape[0]);
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
		if (!qc_st_meta(st, required[i]))
			return qc_seterr(QC_EFORMAT, "bad token set '%s': no '%s' in its metadata", name, required[i]);
	if (strcmp(qc_st_meta(st, "qc_token_set"), QC_TOKSET_VERSION) != 0)
		return qc_seterr(QC_EUNSUPPORTED, "token set '%s' has layout version '%s'; this build reads '%s'",
		                 name, qc_st_meta(st, "qc_token_set"), QC_TOKSET_VERSION);
	int64_t pad, bos, eos, seed, ntok;
	if (parse_i64(qc_st_meta(st, "vocab_size"), &ts->vocab) < 0 || ts->vocab < 1 ||
	    ts->vocab > INT32_MAX || parse_i64(qc_st_meta(st, "pad_id"), &pad) < 0 ||
	    parse_i64(qc_st_meta(st, "bos_id"), &bos) < 0 || parse_i64(qc_st_meta(st, "eos_id"), &eos) < 0 ||
	    parse_i64(qc_st_meta(st, "seed"), &seed) < 0 || parse_i64(qc_st_meta(st, "n_tokens"), &ntok) < 0)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': a numeric metadata value is not a number", name);
	qc_h128 h;
	if (qc_h128_parse(qc_st_meta(st, "tokenizer_xxh3_128"), &h) < 0)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': tokenizer_xxh3_128 is not a 128-bit hex hash",
		                 name);
	json_t *src = json_loads(qc_st_meta(st, "sources"), 0, NULL);
	json_t *opt = json_loads(qc_st_meta(st, "options"), 0, NULL);
	int ok = json_is_array(src) && json_is_object(opt);
	json_decref(src);
	json_decref(opt);
	if (!ok)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': sources must be a JSON array and options an object",
		                 name);
	ts->ids = ids->data;
	ts->lengths = len->data;
	int64_t row, total;
	int bad = check_rows(ts->n, ts->l, ts->ids, ts->lengths, ts->vocab, &row, &total);
	if (bad == 1)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': row %" PRId64 " has length %d, not in [0, %" PRId64 "]",
		                 name, row, ts->lengths[row], ts->l);
	if (bad == 2)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': row %" PRId64 " has a token id outside [0, %" PRId64 ")",
		                 name, row, ts->vocab);
	if (total != ntok)
		return qc_seterr(QC_EFORMAT, "bad token set '%s': n_tokens says %" PRId64 " but the rows hold %" PRId64,
		                 name, ntok, total);
	ts->n_tokens = total;
	return 0;
}

/* Take ownership of an image (mapped or malloc'd) and validate it. */
static int open_image(qc_tokset **out, const void *image, size_t len, int mapped, const char *name)
{
	*out = NULL;
	qc_tokset *ts = calloc(1, sizeof *ts);
	if (!ts) {
		if (mapped)
			qc_unmap(image, len);
		else
			free((void *)image);
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", name);
	}
	ts->image = image;
	ts->image_len = len;
	ts->mapped = mapped;
	ts->hash = qc_xxh3_128(image, len);
	int rc = qc_st_open_mem(&ts->st, (void *)image, len, 0, name);
	if (rc == 0)
		rc = validate(ts, name);
	if (rc < 0) {
		qc_tokset_close(ts);
		return rc;
	}
	*out = ts;
	return 0;
}

int qc_tokset_open_mem(qc_tokset **out, const void *data, size_t len, const char *name)
{
	void *copy = malloc(len ? len : 1);
	*out = NULL;
	if (!copy)
		return qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", name);
	memcpy(copy, data, len);
	return open_image(out, copy, len, 0, name);
}

int qc_tokset_open(qc_tokset **out, const char *path)
{
	*out = NULL;
	if (strcmp(path, "-") != 0) {
		const void *map;
		size_t len;
		QC_TRY(qc_map(path, &map, &len));
		return open_image(out, map, len, 1, path);
	}
	qc_source *src;
	QC_TRY(qc_source_open(&src, "-"));
	unsigned char *buf = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	for (;;) {
		if ((rc = qc_grow((void **)&buf, &cap, n + (1 << 16), 1)) < 0) {
			qc_errctx(rc, "cannot read '<stdin>'");
			break;
		}
		size_t got;
		if ((rc = qc_source_read(src, buf + n, cap - n, &got)) < 0 || got == 0)
			break;
		n += got;
	}
	qc_source_close(src);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	return open_image(out, buf, n, 0, "<stdin>");
}

int64_t qc_tokset_rows(const qc_tokset *ts) { return ts->n; }
int64_t qc_tokset_len(const qc_tokset *ts) { return ts->l; }
const int32_t *qc_tokset_ids(const qc_tokset *ts) { return ts->ids; }
const int32_t *qc_tokset_lengths(const qc_tokset *ts) { return ts->lengths; }
int64_t qc_tokset_n_tokens(const qc_tokset *ts) { return ts->n_tokens; }
int64_t qc_tokset_vocab_size(const qc_tokset *ts) { return ts->vocab; }
qc_h128 qc_tokset_hash(const qc_tokset *ts) { return ts->hash; }
const char *qc_tokset_name(const qc_tokset *ts) { return qc_st_name(ts->st); }
const char *qc_tokset_meta(const qc_tokset *ts, const char *key) { return qc_st_meta(ts->st, key); }

const int32_t *qc_tokset_row(const qc_tokset *ts, int64_t i, int32_t *len)
{
	QC_ASSERT(i >= 0 && i < ts->n);
	if (len)
		*len = ts->lengths[i];
	return ts->ids + i * ts->l;
}

/* ------------------------------------------------------------------------ */
/* writing                                                                   */

static int build(const qc_tokset_spec *s, qc_st_writer **out)
{
	*out = NULL;
	if (s->n < 1 || s->l < 1 || s->n > INT64_MAX / s->l || !s->ids || !s->lengths)
		return qc_seterr(QC_EINVAL, "cannot write a token set of %" PRId64 " x %" PRId64 " tokens", s->n,
		                 s->l);
	if (s->vocab_size < 1 || s->vocab_size > INT32_MAX || s->pad_id < 0 || s->pad_id >= s->vocab_size)
		return qc_seterr(QC_EINVAL, "cannot write a token set: vocabulary size %" PRId64 " or pad id %d",
		                 s->vocab_size, (int)s->pad_id);
	int64_t row, total;
	int bad = check_rows(s->n, s->l, s->ids, s->lengths, s->vocab_size, &row, &total);
	if (bad)
		return qc_seterr(QC_EINVAL, "cannot write a token set: row %" PRId64 " has a bad %s", row,
		                 bad == 1 ? "length" : "token id");
	for (int64_t i = 0; i < s->n; i++)
		for (int64_t j = s->lengths[i]; j < s->l; j++)
			if (s->ids[i * s->l + j] != s->pad_id)
				return qc_seterr(QC_EINVAL, "cannot write a token set: row %" PRId64 " is not padded with %d",
				                 i, (int)s->pad_id);
	json_t *src = json_loads(s->sources ? s->sources : "", 0, NULL);
	json_t *opt = json_loads(s->options ? s->options : "", 0, NULL);
	int ok = json_is_array(src) && json_is_object(opt);
	json_decref(src);
	json_decref(opt);
	if (!ok)
		return qc_seterr(QC_EINVAL, "cannot write a token set: sources must be a JSON array, options an object");

	qc_st_writer *w = qc_st_writer_new();
	if (!w)
		return qc_seterr(QC_ENOMEM, "cannot write a token set: out of memory");
	char hex[33], num[6][32];
	snprintf(num[0], sizeof num[0], "%" PRId64, s->vocab_size);
	snprintf(num[1], sizeof num[1], "%d", (int)s->pad_id);
	snprintf(num[2], sizeof num[2], "%d", (int)s->bos_id);
	snprintf(num[3], sizeof num[3], "%d", (int)s->eos_id);
	snprintf(num[4], sizeof num[4], "%" PRIu64, s->seed);
	snprintf(num[5], sizeof num[5], "%" PRId64, total);
	const char *kv[][2] = {
		{ "format", "pt" }, { "qc_token_set", QC_TOKSET_VERSION },
		{ "tokenizer_xxh3_128", qc_h128_hex(s->tokenizer_hash, hex) }, { "vocab_size", num[0] },
		{ "pad_id", num[1] }, { "bos_id", num[2] }, { "eos_id", num[3] }, { "seed", num[4] },
		{ "sources", s->sources }, { "options", s->options }, { "n_tokens", num[5] },
	};
	int rc = 0;
	for (size_t i = 0; i < sizeof kv / sizeof kv[0] && rc == 0; i++)
		rc = qc_st_writer_meta(w, kv[i][0], kv[i][1]);
	int64_t shape2[2] = { s->n, s->l }, shape1[1] = { s->n };
	if (rc == 0)
		rc = qc_st_writer_add(w, "input_ids", QC_DT_I32, 2, shape2, s->ids, 0);
	if (rc == 0)
		rc = qc_st_writer_add(w, "lengths", QC_DT_I32, 1, shape1, s->lengths, 0);
	if (rc < 0) {
		qc_st_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int qc_tokset_emit(const qc_tokset_spec *spec, qc_sink *sink)
{
	qc_st_writer *w;
	QC_TRY(build(spec, &w));
	int rc = qc_st_writer_emit(w, sink);
	qc_st_writer_free(w);
	return rc;
}

int qc_tokset_save(const qc_tokset_spec *spec, const char *path)
{
	qc_st_writer *w;
	QC_TRY(build(spec, &w));
	int rc = qc_st_writer_save(w, path);
	qc_st_writer_free(w);
	return rc;
}

int qc_tokset_decode_row(const qc_tokset *ts, const qc_tok *t, qc_h128 tok_hash, int64_t i,
                         char **text, size_t *len, int *same)
{
	char hex[33];
	const char *made = qc_tokset_meta(ts, "tokenizer_xxh3_128");
	*same = made && strcmp(qc_h128_hex(tok_hash, hex), made) == 0;
	int32_t n;
	const int32_t *row = qc_tokset_row(ts, i, &n);
	return qc_tok_decode(t, row, (size_t)n, 0, text, len);
}

char *qc_tokset_describe(const qc_tokset *ts)
{
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	if (!out)
		return NULL;
	int64_t n = qc_tokset_rows(ts), l = qc_tokset_len(ts);
	const int32_t *lens = qc_tokset_lengths(ts);
	int64_t mn = INT64_MAX, mx = 0;
	for (int64_t i = 0; i < n; i++) {
		mn = lens[i] < mn ? lens[i] : mn;
		mx = lens[i] > mx ? lens[i] : mx;
	}
	char hex[33];
	fprintf(out, "file:       %s\n", qc_tokset_name(ts));
	fprintf(out, "xxh3_128:   %s\n", qc_h128_hex(qc_tokset_hash(ts), hex));
	fprintf(out, "rows:       %" PRId64 "\n", n);
	fprintf(out, "length:     %" PRId64 "\n", l);
	fprintf(out, "tokens:     %" PRId64 " of %" PRId64 " (%.1f%%)\n", qc_tokset_n_tokens(ts), n * l,
	       100.0 * (double)qc_tokset_n_tokens(ts) / (double)(n * l));
	fprintf(out, "row tokens: min %" PRId64 ", mean %.1f, max %" PRId64 "\n", mn,
	       (double)qc_tokset_n_tokens(ts) / (double)n, mx);
	fprintf(out, "vocab_size: %" PRId64 "\n", qc_tokset_vocab_size(ts));
	fprintf(out, "special:    bos %s, eos %s, pad %s\n", qc_tokset_meta(ts, "bos_id"),
	       qc_tokset_meta(ts, "eos_id"), qc_tokset_meta(ts, "pad_id"));
	fprintf(out, "tokenizer:  %s\n", qc_tokset_meta(ts, "tokenizer_xxh3_128"));
	fprintf(out, "seed:       %s\n", qc_tokset_meta(ts, "seed"));
	fprintf(out, "options:    %s\n", qc_tokset_meta(ts, "options"));
	json_t *src = json_loads(qc_tokset_meta(ts, "sources"), 0, NULL);
	size_t i;
	json_t *e;
	if (json_array_size(src) == 0)
		fprintf(out, "sources:    none\n");
	json_array_foreach(src, i, e)
		fprintf(out, "%s %s  %s\n", i == 0 ? "sources:   " : "           ", json_string_value(json_object_get(e, "xxh3_128")),
		       json_string_value(json_object_get(e, "name")));
	json_decref(src);
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
