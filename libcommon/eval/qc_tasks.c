/* qc_tasks.c - multiple-choice tasks by loglikelihood, as lm-eval scores
 * them (see qc_tasks.h). */
#include "qc_tasks.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_jsonl.h"

int qc_taskfmt_parse(const char *s, qc_taskfmt *f)
{
	if (strcmp(s, "auto") == 0)
		*f = QC_TASKFMT_AUTO;
	else if (strcmp(s, "simple") == 0)
		*f = QC_TASKFMT_SIMPLE;
	else if (strcmp(s, "lm-eval") == 0)
		*f = QC_TASKFMT_LMEVAL;
	else
		return qc_seterr(QC_EINVAL, "unknown task format '%s' (use auto, simple or lm-eval)", s);
	return 0;
}

/* characters as Python counts them: UTF-8 lead bytes (an invalid byte
 * counts as one, as a surrogate escape would) */
static int64_t n_chars(const char *s)
{
	int64_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static char *dupcat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

static void free_item(qc_mc_item *it)
{
	for (int k = 0; k < it->nchoice; k++) {
		free(it->req[k].ctx);
		free(it->req[k].cont);
	}
	free(it->req);
	memset(it, 0, sizeof *it);
}

void qc_mc_free(qc_mc_task *t)
{
	for (int64_t i = 0; i < t->n; i++)
		free_item(&t->items[i]);
	free(t->items);
	free(t->name);
	free(t->path);
	memset(t, 0, sizeof *t);
}

#define BAD(...) qc_seterr(QC_EFORMAT, __VA_ARGS__)

static int alloc_reqs(qc_mc_item *it, size_t n)
{
	it->req = calloc(n, sizeof *it->req);
	if (!it->req)
		return qc_seterr(QC_ENOMEM, "out of memory");
	return 0;
}

static int parse_simple(const char *path, int64_t line, json_t *o, qc_mc_item *it)
{
	json_t *ctx = json_object_get(o, "context"), *ch = json_object_get(o, "choices");
	json_t *gold = json_object_get(o, "gold"), *del = json_object_get(o, "delimiter");
	if (!json_is_string(ctx))
		return BAD("%s:%lld: \"context\" is missing or not a string", path, (long long)line);
	if (!json_is_array(ch))
		return BAD("%s:%lld: \"choices\" is missing or not an array", path, (long long)line);
	if (json_array_size(ch) < 2)
		return BAD("%s:%lld: \"choices\" has %zu entries, at least 2 needed", path,
		           (long long)line, json_array_size(ch));
	if (!json_is_integer(gold))
		return BAD("%s:%lld: \"gold\" is missing or not an integer", path, (long long)line);
	if (del && !json_is_string(del))
		return BAD("%s:%lld: \"delimiter\" is not a string", path, (long long)line);
	size_t n = json_array_size(ch);
	json_int_t g = json_integer_value(gold);
	if (g < 0 || (size_t)g >= n)
		return BAD("%s:%lld: \"gold\" %lld is outside the %zu choices", path, (long long)line,
		           (long long)g, n);
	const char *d = del ? json_string_value(del) : " ";
	QC_TRY(alloc_reqs(it, n));
	it->gold = (int)g;
	for (size_t k = 0; k < n; k++) {
		json_t *c = json_array_get(ch, k);
		if (!json_is_string(c) || json_string_length(c) == 0)
			return BAD("%s:%lld: choice %zu is %s", path, (long long)line, k,
			           json_is_string(c) ? "empty" : "not a string");
		it->nchoice = (int)k + 1;
		it->req[k].ctx = strdup(json_string_value(ctx));
		it->req[k].cont = dupcat(d, json_string_value(c));
		it->req[k].norm_len = n_chars(json_string_value(c));
		if (!it->req[k].ctx || !it->req[k].cont)
			return qc_seterr(QC_ENOMEM, "out of memory");
	}
	return 0;
}

/* "gen_args_<k>" -> k, or -1 */
static long gen_index(const char *key)
{
	if (strncmp(key, "gen_args_", 9) != 0 || !isdigit((unsigned char)key[9]))
		return -1;
	char *end;
	long k = strtol(key + 9, &end, 10);
	return *end ? -1 : k;
}

static int parse_lmeval(const char *path, int64_t line, json_t *o, qc_mc_item *it)
{
	json_t *args = json_object_get(o, "arguments"), *tgt = json_object_get(o, "target");
	size_t n;
	if (json_is_array(args))
		n = json_array_size(args);
	else if (json_is_object(args))
		n = json_object_size(args);
	else
		return BAD("%s:%lld: \"arguments\" is missing or neither an array nor an object", path,
		           (long long)line);
	if (n < 2)
		return BAD("%s:%lld: \"arguments\" has %zu requests, at least 2 needed", path,
		           (long long)line, n);
	QC_TRY(alloc_reqs(it, n));
	for (size_t k = 0; k < n; k++) {
		json_t *c = NULL, *x = NULL;
		if (json_is_array(args)) {
			json_t *a = json_array_get(args, k);
			c = json_array_get(a, 0);
			x = json_array_get(a, 1);
		} else {
			char key[32];
			snprintf(key, sizeof key, "gen_args_%zu", k);
			json_t *a = json_object_get(args, key);
			if (!a) {
				const char *bad = NULL, *kk;
				json_t *vv;
				json_object_foreach(args, kk, vv)
					if (gen_index(kk) < 0 && !bad)
						bad = kk;
				return bad ? BAD("%s:%lld: \"arguments\" has key \"%s\", expected gen_args_N",
				                 path, (long long)line, bad)
				           : BAD("%s:%lld: \"arguments\" lacks \"%s\"", path, (long long)line, key);
			}
			c = json_object_get(a, "arg_0");
			x = json_object_get(a, "arg_1");
		}
		if (!json_is_string(c) || !json_is_string(x))
			return BAD("%s:%lld: request %zu of \"arguments\" is not a (context, continuation) "
			           "pair of strings", path, (long long)line, k);
		const char *cont = json_string_value(x);
		if (!*cont)
			return BAD("%s:%lld: request %zu has an empty continuation", path, (long long)line, k);
		it->nchoice = (int)k + 1;
		it->req[k].ctx = strdup(json_string_value(c));
		it->req[k].cont = strdup(cont);
		it->req[k].norm_len = n_chars(cont[0] == ' ' ? cont + 1 : cont);
		if (!it->req[k].ctx || !it->req[k].cont)
			return qc_seterr(QC_ENOMEM, "out of memory");
	}
	long long g = -1;
	if (json_is_integer(tgt)) {
		g = json_integer_value(tgt);
	} else if (json_is_string(tgt)) {
		const char *s = json_string_value(tgt);
		char *end;
		if (*s && isdigit((unsigned char)*s) && (g = strtoll(s, &end, 10), !*end)) {
			/* a digit string: the index */
		} else {
			g = -1;
			for (size_t k = 0; k < n && g < 0; k++) {
				const char *c = it->req[k].cont;
				if (strcmp(c[0] == ' ' ? c + 1 : c, s) == 0)
					g = (long long)k;
			}
			if (g < 0)
				return BAD("%s:%lld: \"target\" \"%.60s\" is none of the choices", path,
				           (long long)line, s);
		}
	} else {
		return BAD("%s:%lld: \"target\" is missing or not an integer or string", path,
		           (long long)line);
	}
	if (g < 0 || (size_t)g >= n)
		return BAD("%s:%lld: \"target\" %lld is outside the %zu choices", path, (long long)line,
		           g, n);
	it->gold = (int)g;
	return 0;
}

typedef struct {
	qc_mc_task *t;
	qc_taskfmt fmt;
	size_t cap;
} load_ctx;

static int load_line(void *p, json_t *o, int64_t line)
{
	load_ctx *c = p;
	qc_mc_task *t = c->t;
	if (c->fmt == QC_TASKFMT_AUTO)
		c->fmt = json_object_get(o, "arguments") ? QC_TASKFMT_LMEVAL : QC_TASKFMT_SIMPLE;
	if ((size_t)t->n == c->cap) {
		size_t nc = c->cap ? 2 * c->cap : 64;
		qc_mc_item *ni = realloc(t->items, nc * sizeof *ni);
		if (!ni)
			return qc_seterr(QC_ENOMEM, "out of memory");
		t->items = ni;
		c->cap = nc;
	}
	qc_mc_item *it = &t->items[t->n++];
	memset(it, 0, sizeof *it);
	it->line = line;
	return c->fmt == QC_TASKFMT_LMEVAL ? parse_lmeval(t->path, line, o, it)
	                                   : parse_simple(t->path, line, o, it);
}

int qc_mc_load(const char *path, qc_taskfmt fmt, qc_mc_task *t)
{
	memset(t, 0, sizeof *t);
	int rc = 0;
	t->name = qc_jsonl_name(path);
	t->path = strdup(path);
	load_ctx c = { t, fmt, 0 };
	if (!t->name || !t->path)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	else
		rc = qc_jsonl_each(path, load_line, &c);
	t->fmt = c.fmt == QC_TASKFMT_AUTO ? QC_TASKFMT_SIMPLE : c.fmt;
	if (rc)
		qc_mc_free(t);
	return rc;
}

/* ---------------------------------------------------------------- encoding */

static int check_vocab(const qc_ids *ids, size_t from, int64_t vocab)
{
	for (size_t i = from; i < ids->n; i++)
		if (ids->v[i] < 0 || ids->v[i] >= vocab)
			return BAD("the tokenizer gives id %d, outside the model's vocabulary of %lld",
			           (int)ids->v[i], (long long)vocab);
	return 0;
}

int qc_mc_encode(qc_tok *tok, const char *ctx, const char *cont, int add_bos, int64_t vocab,
                 qc_ids *ctx_ids, qc_ids *cont_ids)
{
	unsigned fl = add_bos ? QC_TOK_ADD_SPECIAL : 0;
	size_t c0 = ctx_ids->n, k0 = cont_ids->n;
	size_t lc = strlen(ctx), lk = strlen(cont);
	int rc = 0;
	if (lc == 0) {
		/* lm-eval: the prefix token, then the continuation alone */
		int32_t p = qc_tok_bos(tok) >= 0 ? qc_tok_bos(tok) : qc_tok_eos(tok);
		if (p < 0)
			return BAD("an empty context needs a BOS or EOS token, the tokenizer has neither");
		QC_TRY(qc_ids_push(ctx_ids, p));
		QC_TRY(qc_tok_encode(tok, cont, lk, fl, cont_ids));
		/* encoding with specials adds BOS to the continuation too: drop it,
		 * the prefix token stands for it */
		if (add_bos && cont_ids->n > k0 && cont_ids->v[k0] == p) {
			memmove(cont_ids->v + k0, cont_ids->v + k0 + 1,
			        (cont_ids->n - k0 - 1) * sizeof(int32_t));
			cont_ids->n--;
		}
	} else {
		/* trailing whitespace of the context moves to the continuation
		 * (Python's str.rstrip: ASCII whitespace here) */
		size_t cut = lc;
		while (cut > 0 && isspace((unsigned char)ctx[cut - 1]))
			cut--;
		char *whole = malloc(lc + lk + 1);
		if (!whole)
			return qc_seterr(QC_ENOMEM, "out of memory");
		memcpy(whole, ctx, lc);
		memcpy(whole + lc, cont, lk + 1);
		qc_ids w = { 0 };
		rc = qc_tok_encode(tok, whole, lc + lk, fl, &w);
		if (!rc)
			rc = qc_tok_encode(tok, whole, cut, fl, ctx_ids);
		size_t nc = ctx_ids->n - c0;
		if (!rc && w.n <= nc)
			rc = BAD("the continuation adds no token to the context's %zu", nc);
		for (size_t i = nc; !rc && i < w.n; i++)
			rc = qc_ids_push(cont_ids, w.v[i]);
		qc_ids_release(&w);
		free(whole);
		if (!rc && nc == 0)
			rc = BAD("the context encodes to no token");
	}
	if (!rc && cont_ids->n == k0)
		rc = BAD("the continuation encodes to no token");
	if (!rc)
		rc = check_vocab(ctx_ids, c0, vocab);
	if (!rc)
		rc = check_vocab(cont_ids, k0, vocab);
	return rc;
}

int qc_mc_max_tokens(qc_tok *tok, const qc_mc_task *t, int add_bos, int64_t vocab, int64_t *max)
{
	*max = 1;
	qc_ids c = { 0 }, k = { 0 };
	int rc = 0;
	for (int64_t i = 0; !rc && i < t->n; i++)
		for (int j = 0; !rc && j < t->items[i].nchoice; j++) {
			c.n = k.n = 0;
			const qc_mc_req *r = &t->items[i].req[j];
			if ((rc = qc_mc_encode(tok, r->ctx, r->cont, add_bos, vocab, &c, &k)))
				rc = qc_errctx(rc, "%s:%lld: choice %d", t->path, (long long)t->items[i].line, j);
			else if ((int64_t)(c.n + k.n) > *max)
				*max = (int64_t)(c.n + k.n);
		}
	qc_ids_release(&c);
	qc_ids_release(&k);
	return rc;
}

/* ---------------------------------------------------------------- scoring */

void qc_mc_scores_free(qc_mc_scores *s)
{
	if (s->ll)
		for (int64_t i = 0; i < s->n; i++)
			free(s->ll[i]);
	free(s->ll);
	free(s->pred);
	free(s->pred_norm);
	memset(s, 0, sizeof *s);
}

/* The decoder holds held[0..nheld); make it hold seq[0..n) (n >= 1) minus
 * the last token, reusing the common prefix. */
typedef struct {
	int32_t *v;
	int64_t n, cap;
} held_t;

static int hold_prefix(qc_decoder *d, held_t *h, const int32_t *seq, int64_t n, int64_t *fed)
{
	int64_t want = n - 1, k = 0;
	while (k < h->n && k < want && h->v[k] == seq[k])
		k++;
	QC_TRY(qc_decoder_rewind(d, k));
	h->n = k;
	if (want > h->cap) {
		int32_t *nv = realloc(h->v, (size_t)want * sizeof *nv);
		if (!nv)
			return qc_seterr(QC_ENOMEM, "out of memory");
		h->v = nv;
		h->cap = want;
	}
	QC_TRY(qc_decoder_feed(d, seq + k, want - k, NULL));
	memcpy(h->v + k, seq + k, (size_t)(want - k) * sizeof *seq);
	h->n = want;
	*fed += want - k;
	return 0;
}

/* numpy's argmax: the first maximum */
static int argmax_d(const double *x, int n)
{
	int b = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return b;
}

static int score_item(qc_decoder *d, qc_tok *tok, const qc_mc_item *it, int add_bos,
                      held_t *h, qc_ids *c, qc_ids *k, double *lp, double *ll, double *norm,
                      int64_t *fed, int64_t *req)
{
	int64_t V = qc_model_config(qc_decoder_model(d))->vocab_size;
	for (int j = 0; j < it->nchoice; j++) {
		c->n = k->n = 0;
		const qc_mc_req *r = &it->req[j];
		QC_TRY(qc_mc_encode(tok, r->ctx, r->cont, add_bos, V, c, k));
		/* seq = ctx + cont; the decoder holds seq minus its last token's
		 * successor: positions len(ctx)-1 .. predict cont */
		size_t nc = c->n;
		for (size_t i = 0; i < k->n; i++)
			QC_TRY(qc_ids_push(c, k->v[i]));
		int64_t n = (int64_t)c->n;
		/* hold ctx[0..nc-1), then score ctx[nc-1] + cont[..-1] -> cont */
		QC_TRY(hold_prefix(d, h, c->v, (int64_t)nc, fed));
		QC_TRY(qc_decoder_score(d, c->v + nc - 1, n - (int64_t)nc, c->v + nc, lp, NULL));
		*fed += n - (int64_t)nc;
		*req += n - 1;
		/* the cache now holds seq[0..n-1): remember it for the next request */
		if (n - 1 > h->cap) {
			int32_t *nv = realloc(h->v, (size_t)(n - 1) * sizeof *nv);
			if (!nv)
				return qc_seterr(QC_ENOMEM, "out of memory");
			h->v = nv;
			h->cap = n - 1;
		}
		memcpy(h->v, c->v, (size_t)(n - 1) * sizeof(int32_t));
		h->n = n - 1;
		double s = 0;
		for (int64_t i = 0; i < n - (int64_t)nc; i++)
			s += lp[i];
		ll[j] = s;
		norm[j] = s / (double)r->norm_len;
	}
	return 0;
}

int qc_mc_score(qc_decoder *d, qc_tok *tok, const qc_mc_task *t, int add_bos,
                qc_mc_progress progress, void *pctx, qc_mc_scores *out)
{
	memset(out, 0, sizeof *out);
	int rc = qc_decoder_rewind(d, 0);
	if (rc)
		return rc;
	out->n = t->n;
	out->ll = calloc((size_t)t->n, sizeof *out->ll);
	out->pred = calloc((size_t)t->n, sizeof *out->pred);
	out->pred_norm = calloc((size_t)t->n, sizeof *out->pred_norm);
	double *lp = malloc((size_t)qc_decoder_cap(d) * sizeof *lp), *norm = NULL;
	int maxc = 0;
	for (int64_t i = 0; i < t->n; i++)
		maxc = t->items[i].nchoice > maxc ? t->items[i].nchoice : maxc;
	norm = malloc((size_t)maxc * sizeof *norm);
	if (!out->ll || !out->pred || !out->pred_norm || !lp || !norm)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	held_t h = { 0 };
	qc_ids c = { 0 }, k = { 0 };
	for (int64_t i = 0; !rc && i < t->n; i++) {
		const qc_mc_item *it = &t->items[i];
		if (!(out->ll[i] = malloc((size_t)it->nchoice * sizeof(double)))) {
			rc = qc_seterr(QC_ENOMEM, "out of memory");
			break;
		}
		rc = score_item(d, tok, it, add_bos, &h, &c, &k, lp, out->ll[i], norm, &out->tokens,
		                &out->requested);
		if (rc) {
			rc = qc_errctx(rc, "%s:%lld", t->path, (long long)it->line);
			break;
		}
		out->pred[i] = argmax_d(out->ll[i], it->nchoice);
		out->pred_norm[i] = argmax_d(norm, it->nchoice);
		if (progress)
			progress(pctx, i + 1, t->n);
	}
	free(h.v);
	qc_ids_release(&c);
	qc_ids_release(&k);
	free(lp);
	free(norm);
	if (rc)
		qc_mc_scores_free(out);
	return rc;
}

/* ---------------------------------------------------------------- summary */

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* mean and lm-eval's mean_stderr of 0/1 outcomes */
void qc_mean_stderr(const int *right, int64_t n, double *mean, double *se)
{
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++)
		k += right[i];
	*mean = n ? (double)k / (double)n : NAN;
	*se = n > 1 ? sqrt(*mean * (1 - *mean) / (double)(n - 1)) : NAN;
}

json_t *qc_flips_json(const int *a, const int *b, int64_t n)
{
	int64_t rw = 0, wr = 0;
	for (int64_t i = 0; i < n; i++) {
		rw += b[i] && !a[i];
		wr += !b[i] && a[i];
	}
	json_t *f = json_object();
	json_object_set_new(f, "right_to_wrong", json_integer(rw));
	json_object_set_new(f, "wrong_to_right", json_integer(wr));
	json_object_set_new(f, "right_to_wrong_rate", num((double)rw / (double)n));
	json_object_set_new(f, "wrong_to_right_rate", num((double)wr / (double)n));
	json_object_set_new(f, "rate", num((double)(rw + wr) / (double)n));
	return f;
}

json_t *qc_mc_summary(const qc_mc_task *t, const qc_mc_scores *s, const qc_mc_scores *base)
{
	int64_t n = t->n;
	int *r[2][2] = { { NULL } };  /* [model, base][acc, acc_norm] */
	const qc_mc_scores *ss[2] = { s, base };
	json_t *o = json_object(), *b = NULL;
	int ok = o != NULL;
	for (int m = 0; m < 2 && ok; m++) {
		if (!ss[m])
			continue;
		for (int w = 0; w < 2; w++) {
			r[m][w] = malloc((size_t)n * sizeof(int));
			ok &= r[m][w] != NULL;
			for (int64_t i = 0; ok && i < n; i++)
				r[m][w][i] = (w ? ss[m]->pred_norm[i] : ss[m]->pred[i]) == t->items[i].gold;
		}
	}
	if (ok) {
		double acc[2][2], se[2][2];
		for (int m = 0; m < 2; m++)
			for (int w = 0; w < 2; w++)
				if (ss[m])
					qc_mean_stderr(r[m][w], n, &acc[m][w], &se[m][w]);
		json_object_set_new(o, "task", json_string(t->name));
		json_object_set_new(o, "file", json_string(t->path));
		json_object_set_new(o, "format", json_string(t->fmt == QC_TASKFMT_LMEVAL ? "lm-eval" : "simple"));
		json_object_set_new(o, "n", json_integer(n));
		json_object_set_new(o, "acc", num(acc[0][0]));
		json_object_set_new(o, "acc_stderr", num(se[0][0]));
		json_object_set_new(o, "acc_norm", num(acc[0][1]));
		json_object_set_new(o, "acc_norm_stderr", num(se[0][1]));
		if (base) {
			b = json_object();
			json_object_set_new(b, "acc", num(acc[1][0]));
			json_object_set_new(b, "acc_stderr", num(se[1][0]));
			json_object_set_new(b, "acc_norm", num(acc[1][1]));
			json_object_set_new(b, "acc_norm_stderr", num(se[1][1]));
			json_object_set_new(o, "base", b);
			json_object_set_new(o, "acc_diff", num(acc[0][0] - acc[1][0]));
			json_object_set_new(o, "acc_norm_diff", num(acc[0][1] - acc[1][1]));
			json_object_set_new(o, "acc_recovery", num(acc[1][0] > 0 ? acc[0][0] / acc[1][0] : NAN));
			json_object_set_new(o, "acc_norm_recovery",
			                    num(acc[1][1] > 0 ? acc[0][1] / acc[1][1] : NAN));
			json_t *f = json_object();
			json_object_set_new(f, "acc", qc_flips_json(r[0][0], r[1][0], n));
			json_object_set_new(f, "acc_norm", qc_flips_json(r[0][1], r[1][1], n));
			json_object_set_new(o, "flips", f);
		}
	}
	for (int m = 0; m < 2; m++)
		for (int w = 0; w < 2; w++)
			free(r[m][w]);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}
