/* qc_quality.c - tasks, generations and exact answers of an artifact and
 * its base, with gates (see qc_quality.h). */
#include "qc_quality.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_decode.h"
#include "qc_err.h"

void qc_quality_opts_default(qc_quality_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_new_tokens = 128;
	o->min_acc_recovery = -1;
	o->min_rouge1 = -1;
	o->max_flip_rate = -1;
}

int qc_quality_wanted(const qc_quality_opts *o)
{
	return o->ntasks > 0 || o->prompts || o->answers;
}

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* everything loaded from the files */
typedef struct {
	qc_mc_task *tasks;
	int ntasks;
	qc_prompts prompts, answers;
	int have_prompts, have_answers;
	qc_chat chat;
} inputs;

static void inputs_free(inputs *in)
{
	for (int i = 0; i < in->ntasks; i++)
		qc_mc_free(&in->tasks[i]);
	free(in->tasks);
	if (in->have_prompts)
		qc_prompts_free(&in->prompts);
	if (in->have_answers)
		qc_prompts_free(&in->answers);
}

/* one model's results */
typedef struct {
	qc_mc_scores *mc;      /* [ntasks] */
	qc_gen_out gen, ans;
	int packed;            /* the decoder's int4 Linears and weight bytes */
	int64_t bytes;
} results;

static void results_free(results *r, int ntasks)
{
	if (r->mc)
		for (int i = 0; i < ntasks; i++)
			qc_mc_scores_free(&r->mc[i]);
	free(r->mc);
	qc_gen_out_free(&r->gen);
	qc_gen_out_free(&r->ans);
}

typedef struct {
	const qc_quality_opts *o;
	const char *stage, *model;
} prog;

static void mc_progress(void *ctx, int64_t done, int64_t total)
{
	prog *p = ctx;
	p->o->progress(p->o->progress_ctx, p->stage, p->model, done, total, 0);
}

static void gen_progress(void *ctx, int64_t done, int64_t total, int64_t tokens, double s)
{
	prog *p = ctx;
	p->o->progress(p->o->progress_ctx, p->stage, p->model, done, total,
	               s > 0 ? (double)tokens / s : 0);
}

/* one line per question: the gold index, each model's predictions and
 * loglikelihoods */
static void task_lines(const qc_mc_task *t, const qc_mc_scores *a, const qc_mc_scores *b,
                       json_t *lines)
{
	const qc_mc_scores *ss[2] = { a, b };
	for (int64_t i = 0; i < t->n; i++) {
		json_t *l = json_object();
		json_object_set_new(l, "file", json_string(t->path));
		json_object_set_new(l, "line", json_integer(t->items[i].line));
		json_object_set_new(l, "gold", json_integer(t->items[i].gold));
		for (int w = 0; w < 2; w++) {
			if (!ss[w])
				continue;
			const char *who = w ? "base" : "artifact";
			char key[32];
			snprintf(key, sizeof key, "%s_pred", who);
			json_object_set_new(l, key, json_integer(ss[w]->pred[i]));
			snprintf(key, sizeof key, "%s_pred_norm", who);
			json_object_set_new(l, key, json_integer(ss[w]->pred_norm[i]));
			json_t *ll = json_array();
			for (int k = 0; k < t->items[i].nchoice; k++)
				json_array_append_new(ll, num(ss[w]->ll[i][k]));
			snprintf(key, sizeof key, "%s_ll", who);
			json_object_set_new(l, key, ll);
		}
		json_array_append_new(lines, l);
	}
}

static int run_model(qc_model *m, const char *who, qc_tok *tok, const inputs *in, int64_t cap,
                     const qc_quality_opts *o, results *r)
{
	memset(r, 0, sizeof *r);
	qc_decoder *d;
	QC_TRY(qc_decoder_new(&d, m, cap));
	qc_decoder_weights(d, &r->packed, &r->bytes);
	int rc = 0;
	prog p = { o, "tasks", who };
	if (in->ntasks && !(r->mc = calloc((size_t)in->ntasks, sizeof *r->mc)))
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	for (int i = 0; !rc && i < in->ntasks; i++)
		rc = qc_mc_score(d, tok, &in->tasks[i], o->add_bos, o->progress ? mc_progress : NULL, &p,
		                 &r->mc[i]);
	p.stage = "prompts";
	if (!rc && in->have_prompts)
		rc = qc_generate_all(d, tok, in->chat, &in->prompts, o->max_new_tokens,
		                     o->progress ? gen_progress : NULL, &p, &r->gen);
	p.stage = "answers";
	if (!rc && in->have_answers)
		rc = qc_generate_all(d, tok, QC_CHAT_NONE, &in->answers, o->max_new_tokens,
		                     o->progress ? gen_progress : NULL, &p, &r->ans);
	qc_decoder_free(d);
	if (rc)
		results_free(r, in->ntasks);
	return rc ? qc_errctx(rc, "%s", who) : 0;
}

static void fail(json_t *failures, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(json_t *failures, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	json_array_append_new(failures, json_string(buf));
}

/* gates on one right/wrong task's summary object */
static void gate_task(const qc_quality_opts *o, const char *kind, const char *name,
                      const json_t *s, json_t *failures)
{
	json_t *rec = json_object_get(s, "acc_recovery");
	json_t *fr = json_object_get(json_object_get(json_object_get(s, "flips"), "acc"), "rate");
	if (!json_object_get(s, "base"))
		return;
	/* a base that gets nothing right leaves nothing to recover (null) */
	if (o->min_acc_recovery >= 0 && json_is_number(rec) &&
	    json_number_value(rec) < o->min_acc_recovery)
		fail(failures, "%s: %s: acc_recovery %.6g is below min_acc_recovery %g", kind, name,
		     json_number_value(rec), o->min_acc_recovery);
	if (o->max_flip_rate >= 0 && json_is_number(fr) && json_number_value(fr) > o->max_flip_rate)
		fail(failures, "%s: %s: flip rate %.6g exceeds max_flip_rate %g", kind, name,
		     json_number_value(fr), o->max_flip_rate);
}

static json_t *answers_summary(const qc_quality_opts *o, const inputs *in, const results *a,
                               const results *b, json_t *lines, int *err)
{
	const qc_prompts *ps = &in->answers;
	const char *re = o->answer_regex ? o->answer_regex : QC_ANSWER_REGEX;
	int64_t n = ps->n;
	int *right[2] = { calloc((size_t)n, sizeof(int)), calloc((size_t)n, sizeof(int)) };
	json_t *s = json_object();
	*err = 0;
	if (!right[0] || !right[1] || !s) {
		*err = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	const results *rs[2] = { a, b };
	for (int64_t i = 0; i < n; i++) {
		json_t *l = lines ? json_object() : NULL;
		if (l) {
			json_object_set_new(l, "file", json_string(ps->path));
			json_object_set_new(l, "id", json_string(ps->p[i].id));
			json_object_set_new(l, "prompt", json_string(ps->p[i].text));
			json_object_set_new(l, "target", json_string(ps->p[i].target));
		}
		for (int w = 0; w < 2; w++) {
			if (!rs[w])
				continue;
			char *ans;
			if ((*err = qc_answer_extract(re, rs[w]->ans.text[i], &ans))) {
				json_decref(l);
				goto out;
			}
			right[w][i] = qc_answer_equal(ans, ps->p[i].target);
			if (l) {
				const char *who = w ? "base" : "artifact";
				char key[32];
				json_object_set_new(l, who, json_string(rs[w]->ans.text[i]));
				snprintf(key, sizeof key, "%s_answer", who);
				json_object_set_new(l, key, ans ? json_string(ans) : json_null());
				snprintf(key, sizeof key, "%s_right", who);
				json_object_set_new(l, key, json_boolean(right[w][i]));
			}
			free(ans);
		}
		if (l)
			json_array_append_new(lines, l);
	}
	double acc, se;
	qc_mean_stderr(right[0], n, &acc, &se);
	json_object_set_new(s, "file", json_string(ps->path));
	json_object_set_new(s, "task", json_string(ps->name));
	json_object_set_new(s, "regex", json_string(re));
	json_object_set_new(s, "n", json_integer(n));
	json_object_set_new(s, "acc", num(acc));
	json_object_set_new(s, "acc_stderr", num(se));
	json_object_set_new(s, "tokens", json_integer(a->ans.tokens));
	json_object_set_new(s, "tokens_per_s",
	                    num(a->ans.seconds > 0 ? (double)a->ans.tokens / a->ans.seconds : NAN));
	if (b) {
		double bacc, bse;
		qc_mean_stderr(right[1], n, &bacc, &bse);
		json_t *bo = json_object();
		json_object_set_new(bo, "acc", num(bacc));
		json_object_set_new(bo, "acc_stderr", num(bse));
		json_object_set_new(s, "base", bo);
		json_object_set_new(s, "acc_diff", num(acc - bacc));
		json_object_set_new(s, "acc_recovery", num(bacc > 0 ? acc / bacc : NAN));
		json_t *f = json_object();
		json_object_set_new(f, "acc", qc_flips_json(right[0], right[1], n));
		json_object_set_new(s, "flips", f);
	}
out:
	free(right[0]);
	free(right[1]);
	if (*err) {
		json_decref(s);
		return NULL;
	}
	return s;
}

int qc_quality_run(qc_model *m, qc_model *mb, qc_tok *tok, const char *tok_config, size_t len,
                   const qc_quality_opts *o, json_t **report, json_t *failures, json_t *lines)
{
	*report = NULL;
	if ((o->min_acc_recovery >= 0 || o->min_rouge1 >= 0 || o->max_flip_rate >= 0) && !mb)
		return qc_seterr(QC_EINVAL, "the task gates need a base model");
	if ((o->prompts || o->answers) && o->max_new_tokens < 1)
		return qc_seterr(QC_EINVAL, "max_new_tokens must be positive");
	if (o->min_rouge1 >= 0 && !o->prompts)
		return qc_seterr(QC_EINVAL, "min_rouge1 needs a prompt file");
	inputs in = { 0 };
	results ra = { 0 }, rb = { 0 };
	int64_t V = qc_model_config(m)->vocab_size, cap = 1, c;
	int rc = 0, have_b = 0;
	in.chat = qc_chat_resolve(o->chat, tok_config, len);
	if (o->ntasks && !(in.tasks = calloc((size_t)o->ntasks, sizeof *in.tasks)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	for (int i = 0; !rc && i < o->ntasks; i++) {
		if (!(rc = qc_mc_load(o->tasks[i], o->task_format, &in.tasks[i]))) {
			in.ntasks++;
			if (!(rc = qc_mc_max_tokens(tok, &in.tasks[i], o->add_bos, V, &c)))
				cap = c > cap ? c : cap;
		}
	}
	if (!rc && o->prompts && !(rc = qc_prompts_load(o->prompts, 0, &in.prompts))) {
		in.have_prompts = 1;
		if (!(rc = qc_prompts_max_tokens(tok, in.chat, &in.prompts, V, o->max_new_tokens, &c)))
			cap = c > cap ? c : cap;
	}
	if (!rc && o->answers && !(rc = qc_prompts_load(o->answers, 1, &in.answers))) {
		in.have_answers = 1;
		if (!(rc = qc_prompts_max_tokens(tok, QC_CHAT_NONE, &in.answers, V, o->max_new_tokens, &c)))
			cap = c > cap ? c : cap;
		char *probe = NULL;
		if (!rc)
			rc = qc_answer_extract(o->answer_regex ? o->answer_regex : QC_ANSWER_REGEX, "", &probe);
		free(probe);
	}
	/* the base first: an artifact that fails to load still costs its time */
	if (!rc && mb && !(rc = run_model(mb, "base", tok, &in, cap, o, &rb)))
		have_b = 1;
	if (!rc)
		rc = run_model(m, "artifact", tok, &in, cap, o, &ra);
	if (rc)
		goto out;
	json_t *rep = json_object(), *tasks = json_array();
	json_object_set_new(rep, "tasks", tasks);
	for (int i = 0; i < in.ntasks; i++) {
		json_t *s = qc_mc_summary(&in.tasks[i], &ra.mc[i], have_b ? &rb.mc[i] : NULL);
		if (!s) {
			rc = qc_seterr(QC_ENOMEM, "out of memory");
			break;
		}
		json_object_set_new(s, "tokens", json_integer(ra.mc[i].tokens));
		json_object_set_new(s, "tokens_requested", json_integer(ra.mc[i].requested));
		gate_task(o, "tasks", in.tasks[i].name, s, failures);
		json_array_append_new(tasks, s);
		if (lines)
			task_lines(&in.tasks[i], &ra.mc[i], have_b ? &rb.mc[i] : NULL, lines);
	}
	json_t *gen = NULL, *ans = NULL;
	if (!rc && in.have_prompts) {
		gen = qc_gen_summary(&in.prompts, in.chat, o->max_new_tokens, &ra.gen,
		                     have_b ? &rb.gen : NULL, lines);
		if (!gen)
			rc = qc_seterr(QC_ENOMEM, "out of memory");
		json_t *r1 = json_object_get(gen, "rouge1");
		if (gen && o->min_rouge1 >= 0 &&
		    !(json_is_number(r1) && json_number_value(r1) >= o->min_rouge1))
			fail(failures, "prompts: %s: rouge1 %.6g is below min_rouge1 %g", in.prompts.name,
			     json_is_number(r1) ? json_number_value(r1) : NAN, o->min_rouge1);
	}
	if (!rc && in.have_answers) {
		ans = answers_summary(o, &in, &ra, have_b ? &rb : NULL, lines, &rc);
		if (ans)
			gate_task(o, "answers", in.answers.name, ans, failures);
	}
	json_t *dec = json_object();
	const results *rr[2] = { &ra, have_b ? &rb : NULL };
	for (int w = 0; w < 2; w++) {
		if (!rr[w])
			continue;
		json_t *x = json_object();
		json_object_set_new(x, "int4_linears", json_integer(rr[w]->packed));
		json_object_set_new(x, "weight_bytes", json_integer(rr[w]->bytes));
		json_object_set_new(dec, w ? "base" : "artifact", x);
	}
	json_object_set_new(rep, "decoder", dec);
	json_object_set_new(rep, "generation", gen ? gen : json_null());
	json_object_set_new(rep, "answers", ans ? ans : json_null());
	json_t *g = json_object();
	json_object_set_new(g, "min_acc_recovery", o->min_acc_recovery >= 0 ? json_real(o->min_acc_recovery) : json_null());
	json_object_set_new(g, "min_rouge1", o->min_rouge1 >= 0 ? json_real(o->min_rouge1) : json_null());
	json_object_set_new(g, "max_flip_rate", o->max_flip_rate >= 0 ? json_real(o->max_flip_rate) : json_null());
	json_object_set_new(rep, "gates", g);
	if (rc)
		json_decref(rep);
	else
		*report = rep;
out:
	results_free(&ra, in.ntasks);
	if (have_b)
		results_free(&rb, in.ntasks);
	inputs_free(&in);
	return rc;
}
