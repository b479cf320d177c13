/* qc_gen.c - prompts, chat formatting, greedy outputs, their similarity,
 * exact answers (see qc_gen.h). */
#include "qc_gen.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_jsonl.h"
#include "qc_log.h"
#include "qc_rouge.h"

int qc_chat_parse(const char *s, qc_chat *c)
{
	static const char *const names[] = { "auto", "none", "llama3", "llama2" };
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*c = (qc_chat)i;
			return 0;
		}
	return qc_seterr(QC_EINVAL, "unknown chat template '%s' (use auto, none, llama3 or llama2)", s);
}

const char *qc_chat_name(qc_chat c)
{
	return c == QC_CHAT_LLAMA3 ? "llama3" : c == QC_CHAT_LLAMA2 ? "llama2"
	     : c == QC_CHAT_NONE ? "none" : "auto";
}

/* is needle in the first len bytes of hay? */
static int has(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; hay && i + n <= len; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return 1;
	return 0;
}

qc_chat qc_chat_resolve(qc_chat c, const char *cfg, size_t len)
{
	if (c != QC_CHAT_AUTO)
		return c;
	/* the template is JSON-escaped in the file; these markers have no
	 * characters JSON escapes */
	if (has(cfg, len, "<|start_header_id|>"))
		return QC_CHAT_LLAMA3;
	if (has(cfg, len, "[INST]"))
		return QC_CHAT_LLAMA2;
	return QC_CHAT_NONE;
}

/* ---------------------------------------------------------------- files */

static void free_prompt(qc_prompt *p)
{
	free(p->id);
	free(p->text);
	free(p->target);
	json_decref(p->messages);
}

void qc_prompts_free(qc_prompts *ps)
{
	for (int64_t i = 0; i < ps->n; i++)
		free_prompt(&ps->p[i]);
	free(ps->p);
	free(ps->path);
	free(ps->name);
	memset(ps, 0, sizeof *ps);
}

#define BAD(...) qc_seterr(QC_EFORMAT, __VA_ARGS__)

static char *trimdup(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static int parse_prompt(const char *path, int64_t line, json_t *o, int answers, qc_prompt *p)
{
	json_t *pr = json_object_get(o, "prompt"), *q = json_object_get(o, "question");
	json_t *msg = json_object_get(o, "messages"), *id = json_object_get(o, "id");
	char buf[64];
	if (json_is_string(id))
		p->id = strdup(json_string_value(id));
	else if (json_is_integer(id))
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(id)), p->id = strdup(buf);
	else if (id)
		return BAD("%s:%lld: \"id\" is neither a string nor an integer", path, (long long)line);
	else
		snprintf(buf, sizeof buf, "%lld", (long long)line), p->id = strdup(buf);
	if (!p->id)
		return qc_seterr(QC_ENOMEM, "out of memory");
	if (json_is_string(pr)) {
		p->text = strdup(json_string_value(pr));
	} else if (answers && json_is_string(q)) {
		/* lm-eval gsm8k's doc_to_text */
		const char *s = json_string_value(q);
		size_t n = strlen(s) + 32;
		if ((p->text = malloc(n)))
			snprintf(p->text, n, "Question: %s\nAnswer:", s);
	} else if (!answers && json_is_array(msg)) {
		size_t i;
		json_t *m;
		if (json_array_size(msg) == 0)
			return BAD("%s:%lld: \"messages\" is empty", path, (long long)line);
		json_array_foreach(msg, i, m) {
			json_t *r = json_object_get(m, "role"), *c = json_object_get(m, "content");
			if (!json_is_string(r) || !json_is_string(c))
				return BAD("%s:%lld: message %zu needs \"role\" and \"content\" strings", path,
				           (long long)line, i);
			const char *rs = json_string_value(r);
			if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
				return BAD("%s:%lld: message %zu has role '%s' (system, user or assistant)",
				           path, (long long)line, i, rs);
		}
		p->messages = json_incref(msg);
		p->text = strdup(json_string_value(json_object_get(json_array_get(msg,
		                 json_array_size(msg) - 1), "content")));
	} else {
		return BAD(answers ? "%s:%lld: \"prompt\" or \"question\" is missing or not a string"
		                   : "%s:%lld: \"prompt\" or \"messages\" is missing or of the wrong type",
		           path, (long long)line);
	}
	if (!p->text)
		return qc_seterr(QC_ENOMEM, "out of memory");
	if (answers) {
		json_t *t = json_object_get(o, "target"), *a = json_object_get(o, "answer");
		if (json_is_string(t)) {
			p->target = trimdup(json_string_value(t));
		} else if (json_is_string(a)) {
			/* lm-eval gsm8k's doc_to_target: after the last "####" */
			const char *s = json_string_value(a), *h = s, *f;
			while ((f = strstr(h, "####")))
				h = f + 4;
			p->target = trimdup(h);
		} else {
			return BAD("%s:%lld: \"target\" or \"answer\" is missing or not a string", path,
			           (long long)line);
		}
		if (!p->target)
			return qc_seterr(QC_ENOMEM, "out of memory");
		if (!*p->target)
			return BAD("%s:%lld: the target is empty", path, (long long)line);
	}
	return 0;
}

typedef struct {
	qc_prompts *ps;
	int answers;
	size_t cap;
} load_ctx;

static int load_line(void *p, json_t *o, int64_t line)
{
	load_ctx *c = p;
	qc_prompts *ps = c->ps;
	if ((size_t)ps->n == c->cap) {
		size_t nc = c->cap ? 2 * c->cap : 32;
		qc_prompt *np = realloc(ps->p, nc * sizeof *np);
		if (!np)
			return qc_seterr(QC_ENOMEM, "out of memory");
		ps->p = np;
		c->cap = nc;
	}
	qc_prompt *q = &ps->p[ps->n++];
	memset(q, 0, sizeof *q);
	q->line = line;
	return parse_prompt(ps->path, line, o, c->answers, q);
}

int qc_prompts_load(const char *path, int answers, qc_prompts *ps)
{
	memset(ps, 0, sizeof *ps);
	int rc;
	ps->path = strdup(path);
	ps->name = qc_jsonl_name(path);
	load_ctx c = { ps, answers, 0 };
	if (!ps->path || !ps->name)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	else
		rc = qc_jsonl_each(path, load_line, &c);
	if (rc)
		qc_prompts_free(ps);
	return rc;
}

/* ---------------------------------------------------------------- chat */

typedef struct {
	char *s;
	size_t n, cap;
	int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t c = (b->n + n + 1) * 2;
		char *t = realloc(b->s, c);
		if (!t) {
			b->oom = 1;
			return;
		}
		b->s = t;
		b->cap = c;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Jinja's |trim and Python's str.strip: whitespace both ends */
static void sb_trim(sbuf *b, const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	sb_add(b, s, n);
}

static void msg_at(const qc_prompt *p, size_t i, const char **role, const char **content)
{
	json_t *m = json_array_get(p->messages, i);
	*role = json_string_value(json_object_get(m, "role"));
	*content = json_string_value(json_object_get(m, "content"));
}

static size_t n_msgs(const qc_prompt *p)
{
	return p->messages ? json_array_size(p->messages) : 1;
}

static void format_llama3(sbuf *b, const qc_prompt *p)
{
	sb_str(b, "<|begin_of_text|>");
	for (size_t i = 0; i < n_msgs(p); i++) {
		const char *r = "user", *c = p->text;
		if (p->messages)
			msg_at(p, i, &r, &c);
		sb_str(b, "<|start_header_id|>");
		sb_str(b, r);
		sb_str(b, "<|end_header_id|>\n\n");
		sb_trim(b, c);
		sb_str(b, "<|eot_id|>");
	}
	sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void format_llama2(sbuf *b, const qc_prompt *p)
{
	const char *sys = NULL;
	for (size_t i = 0; i < n_msgs(p); i++) {
		const char *r = "user", *c = p->text;
		if (p->messages)
			msg_at(p, i, &r, &c);
		if (strcmp(r, "system") == 0) {
			sys = c;
		} else if (strcmp(r, "user") == 0) {
			sb_str(b, "<s>[INST] ");
			if (sys) {
				sb_str(b, "<<SYS>>\n");
				sb_trim(b, sys);
				sb_str(b, "\n<</SYS>>\n\n");
				sys = NULL;
			}
			sb_trim(b, c);
			sb_str(b, " [/INST]");
		} else {
			sb_str(b, " ");
			sb_trim(b, c);
			sb_str(b, " </s>");
		}
	}
}

int qc_prompt_encode(qc_tok *tok, qc_chat chat, const qc_prompt *p, int64_t vocab, qc_ids *ids)
{
	size_t n0 = ids->n;
	int rc;
	if (chat == QC_CHAT_NONE || chat == QC_CHAT_AUTO) {
		if (p->messages)
			return qc_seterr(QC_EINVAL, "line %lld has \"messages\": they need a chat template "
			                 "(llama3 or llama2)", (long long)p->line);
		rc = qc_tok_encode(tok, p->text, strlen(p->text), QC_TOK_ADD_SPECIAL, ids);
	} else {
		sbuf b = { 0 };
		if (chat == QC_CHAT_LLAMA3)
			format_llama3(&b, p);
		else
			format_llama2(&b, p);
		if (b.oom) {
			free(b.s);
			return qc_seterr(QC_ENOMEM, "out of memory");
		}
		rc = qc_tok_encode(tok, b.s, b.n, 0, ids);
		free(b.s);
	}
	if (rc)
		return rc;
	if (ids->n == n0)
		return BAD("line %lld: the prompt encodes to no token", (long long)p->line);
	for (size_t i = n0; i < ids->n; i++)
		if (ids->v[i] < 0 || ids->v[i] >= vocab)
			return BAD("line %lld: the tokenizer gives id %d, outside the model's vocabulary "
			           "of %lld", (long long)p->line, (int)ids->v[i], (long long)vocab);
	return 0;
}

int qc_prompts_max_tokens(qc_tok *tok, qc_chat chat, const qc_prompts *ps, int64_t vocab,
                          int64_t max_new, int64_t *cap)
{
	qc_ids ids = { 0 };
	*cap = 1;
	for (int64_t i = 0; i < ps->n; i++) {
		ids.n = 0;
		int rc = qc_prompt_encode(tok, chat, &ps->p[i], vocab, &ids);
		if (rc) {
			qc_ids_release(&ids);
			return qc_errctx(rc, "%s", ps->path);
		}
		if ((int64_t)ids.n + max_new > *cap)
			*cap = (int64_t)ids.n + max_new;
	}
	qc_ids_release(&ids);
	return 0;
}

/* ---------------------------------------------------------------- generation */

void qc_gen_out_free(qc_gen_out *o)
{
	for (int64_t i = 0; i < o->n; i++) {
		if (o->ids)
			qc_ids_release(&o->ids[i]);
		if (o->text)
			free(o->text[i]);
	}
	free(o->ids);
	free(o->text);
	memset(o, 0, sizeof *o);
}

/* length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t k = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
	         : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
	if (!k || k > n)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	/* overlong 3/4-byte forms, surrogates, above U+10FFFF */
	if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0) ||
	    (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))
		return 0;
	return k;
}

/* the text with each invalid byte replaced by U+FFFD, as a Python decode
 * with errors="replace" prints a generation cut inside a character (the
 * report is JSON: its strings must be UTF-8) */
static char *utf8_clean(const char *t, size_t len)
{
	char *d = malloc(3 * len + 1);
	size_t o = 0;
	if (!d)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t k = utf8_len((const unsigned char *)t + i, len - i);
		if (k && t[i]) {
			memcpy(d + o, t + i, k);
			o += k;
			i += k;
		} else {
			memcpy(d + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		}
	}
	d[o] = 0;
	return d;
}

int qc_generate_all(qc_decoder *d, qc_tok *tok, qc_chat chat, const qc_prompts *ps,
                    int64_t max_new, qc_gen_progress progress, void *pctx, qc_gen_out *out)
{
	memset(out, 0, sizeof *out);
	const qc_config *cfg = qc_model_config(qc_decoder_model(d));
	int32_t stop[12];
	int nstop = 0;
	for (int i = 0; i < cfg->n_eos && nstop < 8; i++)
		stop[nstop++] = (int32_t)cfg->eos_token_ids[i];
	if (qc_tok_eos(tok) >= 0)
		stop[nstop++] = qc_tok_eos(tok);
	if (chat == QC_CHAT_LLAMA3) {
		int32_t e = qc_tok_find(tok, "<|eot_id|>", 10);
		if (e >= 0)
			stop[nstop++] = e;
	}
	qc_gen_opts go = { .max_new = max_new, .stop = stop, .nstop = nstop };
	out->n = ps->n;
	out->ids = calloc((size_t)ps->n, sizeof *out->ids);
	out->text = calloc((size_t)ps->n, sizeof *out->text);
	int32_t *buf = malloc((size_t)max_new * sizeof *buf);
	int rc = 0;
	if (!out->ids || !out->text || !buf)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	qc_ids prompt = { 0 };
	double t0 = qc_now();
	for (int64_t i = 0; !rc && i < ps->n; i++) {
		prompt.n = 0;
		int64_t n = 0;
		int st;
		if (!(rc = qc_prompt_encode(tok, chat, &ps->p[i], cfg->vocab_size, &prompt)) &&
		    !(rc = qc_decoder_rewind(d, 0)))
			rc = qc_decoder_generate(d, prompt.v, (int64_t)prompt.n, &go, buf, &n, &st);
		for (int64_t k = 0; !rc && k < n; k++)
			rc = qc_ids_push(&out->ids[i], buf[k]);
		size_t tl;
		char *raw = NULL;
		if (!rc && !(rc = qc_tok_decode(tok, buf, (size_t)n, QC_TOK_SKIP_SPECIAL, &raw, &tl)) &&
		    !(out->text[i] = utf8_clean(raw, tl)))
			rc = qc_seterr(QC_ENOMEM, "out of memory");
		free(raw);
		if (rc) {
			rc = qc_errctx(rc, "%s:%lld", ps->path, (long long)ps->p[i].line);
			break;
		}
		out->tokens += n;
		out->seconds = qc_now() - t0;
		if (progress)
			progress(pctx, i + 1, ps->n, out->tokens, out->seconds);
	}
	qc_ids_release(&prompt);
	free(buf);
	if (rc)
		qc_gen_out_free(out);
	return rc;
}

/* ---------------------------------------------------------------- similarity */

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *qc_gen_summary(const qc_prompts *ps, qc_chat chat, int64_t max_new,
                       const qc_gen_out *a, const qc_gen_out *b, json_t *lines)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "file", json_string(ps->path));
	json_object_set_new(o, "chat", json_string(qc_chat_name(chat)));
	json_object_set_new(o, "n", json_integer(ps->n));
	json_object_set_new(o, "max_new_tokens", json_integer(max_new));
	json_object_set_new(o, "tokens", json_integer(a->tokens));
	json_object_set_new(o, "tokens_per_s", num(a->seconds > 0 ? (double)a->tokens / a->seconds : NAN));
	double r1 = 0, rl = 0, fd = 0;
	int64_t em = 0, div = 0;
	for (int64_t i = 0; i < ps->n; i++) {
		json_t *l = lines ? json_object() : NULL;
		if (l) {
			json_object_set_new(l, "file", json_string(ps->path));
			json_object_set_new(l, "id", json_string(ps->p[i].id));
			json_object_set_new(l, "prompt", json_string(ps->p[i].text));
			json_object_set_new(l, "artifact", json_string(a->text[i]));
			json_object_set_new(l, "artifact_tokens", json_integer((json_int_t)a->ids[i].n));
		}
		if (b) {
			qc_rouge_score s1, sl;
			if (qc_rouge(b->text[i], a->text[i], &s1, &sl)) {
				json_decref(l);
				json_decref(o);
				return NULL;
			}
			const qc_ids *x = &a->ids[i], *y = &b->ids[i];
			size_t k = 0;
			while (k < x->n && k < y->n && x->v[k] == y->v[k])
				k++;
			int same = x->n == y->n && k == x->n;
			r1 += s1.f1;
			rl += sl.f1;
			fd += (double)k;
			em += same;
			div += !same;
			if (l) {
				json_object_set_new(l, "base", json_string(b->text[i]));
				json_object_set_new(l, "base_tokens", json_integer((json_int_t)y->n));
				json_object_set_new(l, "rouge1", json_real(s1.f1));
				json_object_set_new(l, "rougeL", json_real(sl.f1));
				json_object_set_new(l, "exact_match", json_boolean(same));
				json_object_set_new(l, "first_diff", json_integer((json_int_t)k));
			}
		}
		if (l)
			json_array_append_new(lines, l);
	}
	if (b) {
		double n = (double)ps->n;
		json_object_set_new(o, "rouge1", num(r1 / n));
		json_object_set_new(o, "rougeL", num(rl / n));
		json_object_set_new(o, "exact_match", num((double)em / n));
		json_object_set_new(o, "first_diff_mean", num(fd / n));
		json_object_set_new(o, "diverged", json_integer(div));
		json_object_set_new(o, "base_tokens", json_integer(b->tokens));
		json_object_set_new(o, "base_tokens_per_s",
		                    num(b->seconds > 0 ? (double)b->tokens / b->seconds : NAN));
	}
	return o;
}

/* ---------------------------------------------------------------- exact answers */

int qc_answer_extract(const char *regex, const char *text, char **answer)
{
	*answer = NULL;
	int err;
	PCRE2_SIZE eoff;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err,
	                               &eoff, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof msg);
		return qc_seterr(QC_EINVAL, "answer regex '%s': %s at offset %zu", regex, (char *)msg,
		                 (size_t)eoff);
	}
	size_t len = strlen(text);
	const char *stop = strstr(text, "Question:");
	if (stop)
		len = (size_t)(stop - text);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	int rc = 0;
	if (!md) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	} else {
		int n = pcre2_match(re, (PCRE2_SPTR)text, len, 0, 0, md, NULL);
		if (n > 0) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			int g = 0;
			for (int k = 1; k < n && !g; k++)
				if (ov[2 * k] != PCRE2_UNSET)
					g = k;
			size_t s = ov[2 * g], e = ov[2 * g + 1];
			if ((*answer = malloc(e - s + 1))) {
				memcpy(*answer, text + s, e - s);
				(*answer)[e - s] = 0;
			} else {
				rc = qc_seterr(QC_ENOMEM, "out of memory");
			}
		}
	}
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	return rc;
}

/* lm-eval gsm8k's exact_match normalization into a new string */
static char *normalize(const char *s)
{
	const char *h = s, *f;
	while ((f = strstr(h, "#### ")))
		h = f + 5;
	size_t n = strlen(h), o = 0;
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (h[i] != ',' && h[i] != '$')
			d[o++] = (char)tolower((unsigned char)h[i]);
	d[o] = 0;
	if (o && d[o - 1] == '.')
		d[--o] = 0;
	char *t = trimdup(d);
	free(d);
	return t;
}

int qc_answer_equal(const char *answer, const char *target)
{
	if (!answer)
		return 0;
	char *a = normalize(answer), *t = normalize(target);
	int eq = a && t && strcmp(a, t) == 0;
	free(a);
	free(t);
	return eq;
}
