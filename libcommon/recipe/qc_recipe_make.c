/* qc_recipe_make.c - the commands of a recipe and the Makefile that runs
 * them (qc_recipe.h says what the targets are). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_hash.h"
#include "qc_vec.h"
#include "qc_recipe_int.h"

#ifndef QC_VERSION
#define QC_VERSION "0"
#endif

/* ------------------------------------------------------------ strings */

typedef struct sbuf {
	char *s;
	size_t n, cap;
	int oom;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t k)
{
	if (b->oom)
		return;
	if (b->n + k + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + k + 1)
			cap *= 2;
		char *g = realloc(b->s, cap);
		if (!g) {
			b->oom = 1;
			return;
		}
		b->s = g;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, k);
	b->n += k;
	b->s[b->n] = 0;
}

static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

static void sb_addf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_addf(sbuf *b, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = 1;
		return;
	}
	sb_addn(b, s, (size_t)n);
	free(s);
}

char *qc_recipe__shq(const char *s)
{
	int plain = *s != 0;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("_./:=+,@%^-", *p)))
			plain = 0;
	if (plain)
		return strdup(s);
	sbuf b = { 0 };
	sb_add(&b, "'");
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			sb_add(&b, "'\\''");
		else
			sb_addn(&b, p, 1);
	}
	sb_add(&b, "'");
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

static void sb_q(sbuf *b, const char *s)
{
	char *q = qc_recipe__shq(s);
	if (!q) {
		b->oom = 1;
		return;
	}
	sb_add(b, q);
	free(q);
}

/* ------------------------------------------------------------ commands */

/* Around the options that do not change a tool's output (qc_rt_tool
 * .same_output) the commands carry these bytes, which no value holds
 * (control characters are refused): the command as run drops the marks,
 * the command as hashed drops what they enclose. */
#define MARK_ON "\001"
#define MARK_OFF "\002"

/* s without the marks (keep 1) or without what they enclose (keep 0),
 * malloc'd */
static char *cmd_text(const char *s, int keep)
{
	char *t = malloc(strlen(s) + 1), *o = t;
	if (!t)
		return NULL;
	int in = 0;
	for (; *s; s++) {
		if (*s == MARK_ON[0])
			in = 1;
		else if (*s == MARK_OFF[0])
			in = 0;
		else if (keep || !in)
			*o++ = *s;
	}
	*o = 0;
	return t;
}

/* the options of c in table order: its own keys, then the common ones;
 * only the keys in `only` when it is not NULL */
static void sb_opts_only(sbuf *b, const qc_recipe__call *c, const char *only)
{
	for (int pass = 0; pass < 2; pass++)
		for (const qc_rt_opt *o = pass ? c->tool->common : c->tool->opts; o && o->key; o++)
			for (int i = 0; i < c->n_vals; i++) {
				const qc_recipe__val *v = &c->vals[i];
				if (v->opt != o || (only && !qc_recipe__word_in(o->key, only)))
					continue;
				/* an option that does not change the output is marked, to
				 * be left out of the command's hash (see cmd_text) */
				int same = c->tool->same_output && qc_recipe__word_in(o->key, c->tool->same_output);
				if (same)
					sb_add(b, MARK_ON);
				for (int j = 0; j < v->n; j++) {
					sb_addf(b, " %s", o->flag);
					if (o->type != QC_RT_FLAG) {
						sb_add(b, " ");
						sb_q(b, v->v[j]);
					}
				}
				if (same)
					sb_add(b, MARK_OFF);
			}
}

static void sb_opts(sbuf *b, const qc_recipe__call *c) { sb_opts_only(b, c, NULL); }

static const char *quiet(const qc_recipe *r) { return r->progress ? "" : " -q"; }

static void cmd_step(sbuf *b, const qc_recipe *r, const qc_recipe__step *s, const char *in, const char *out)
{
	const qc_rt_tool *t = s->call.tool;
	int dir = strcmp(out, "-") != 0;
	sb_add(b, t->name);
	sb_opts(b, &s->call);
	if (s->calib)
		sb_addf(b, " --calib %s", qc_recipe__find_tokens(r, s->calib)->path);
	if (dir && r->resume && t->resume)
		sb_add(b, " --resume");
	if (dir && t->force)
		sb_addf(b, " %s", t->force);
	sb_addf(b, "%s -o %s %s", quiet(r), out, in);
}

static void cmd_tokens(sbuf *b, const qc_recipe *r, const qc_recipe__tokens *t)
{
	sb_addf(b, "qcalib -m %s", r->model_path);
	/* random ids: the options about texts do not apply */
	sb_opts_only(b, &t->call, t->source == QC_TOK_RANDOM ? "rows len seed tokenizer" : NULL);
	if (t->source == QC_TOK_RANDOM)
		sb_add(b, " --random");
	sb_addf(b, "%s -o %s", quiet(r), t->path);
	if (t->source == QC_TOK_TEXT)
		for (int i = 0; i < t->n_files; i++)
			sb_addf(b, " %s", t->files[i]);
}

/* ------------------------------------------------------------ rules */

typedef struct rule {
	char *target;
	char *prereq;           /* space-separated */
	char *cmd;              /* as the shell runs it; NULL for an input that must exist */
	char *tools;            /* for the `need` check */
	char *what;             /* a comment */
} rule;

typedef struct rules {
	rule *v;
	size_t n, cap;
	int oom;
} rules;

static void rules_free(rules *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].target);
		free(rs->v[i].prereq);
		free(rs->v[i].cmd);
		free(rs->v[i].tools);
		free(rs->v[i].what);
	}
	free(rs->v);
}

static rule *find_rule(rules *rs, const char *target)
{
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->v[i].target, target) == 0)
			return &rs->v[i];
	return NULL;
}

/* Add a rule (strings copied) unless its target has one already. */
static void add_rule(rules *rs, const char *target, const char *prereq, const char *cmd,
                     const char *tools, const char *what)
{
	if (rs->oom || find_rule(rs, target))
		return;
	if (qc_grow((void **)&rs->v, &rs->cap, rs->n + 1, sizeof *rs->v) != 0) {
		rs->oom = 1;
		return;
	}
	rule *x = &rs->v[rs->n++];
	x->target = strdup(target);
	x->prereq = strdup(prereq ? prereq : "");
	x->cmd = cmd ? strdup(cmd) : NULL;
	x->tools = strdup(tools ? tools : "");
	x->what = strdup(what ? what : "");
	if (!x->target || !x->prereq || (cmd && !x->cmd) || !x->tools || !x->what)
		rs->oom = 1;
}

static void add_input(rules *rs, const char *path, const char *what)
{
	add_rule(rs, path, "", NULL, "", what);
}

static void model_rules(rules *rs, const qc_recipe *r)
{
	if (r->model_source == QC_SRC_SYNTH) {
		sbuf b = { 0 };
		sb_add(&b, "qsynth");
		sb_opts(&b, &r->synth);
		sb_addf(&b, " -f%s -o %s", quiet(r), r->model_path);
		if (b.oom)
			rs->oom = 1;
		else
			add_rule(rs, r->model_path, "", b.s, "qsynth", "the model: a qsynth checkpoint");
		free(b.s);
	} else {
		add_input(rs, r->model_path, "the model (MODEL)");
	}
}

static void tokens_rule(rules *rs, const qc_recipe *r, const qc_recipe__tokens *t)
{
	if (t->source == QC_TOK_FILE) {
		add_input(rs, t->path, "a token set");
		return;
	}
	int text = t->source == QC_TOK_TEXT;
	for (int i = 0; text && i < t->n_files; i++)
		add_input(rs, t->files[i], "a text for qcalib");
	sbuf b = { 0 }, p = { 0 }, w = { 0 };
	cmd_tokens(&b, r, t);
	sb_add(&p, r->model_path);
	for (int i = 0; text && i < t->n_files; i++)
		sb_addf(&p, " %s", t->files[i]);
	sb_addf(&w, "the token set '%s'", t->name);
	if (b.oom || p.oom || w.oom)
		rs->oom = 1;
	else
		add_rule(rs, t->path, p.s, b.s, "qcalib", w.s);
	free(b.s);
	free(p.s);
	free(w.s);
}

static void release_cmd(sbuf *b, const qc_recipe *r, const qc_recipe__variant *v)
{
	sb_add(b, "qrecipe release ");
	sb_q(b, r->file);
	sb_addf(b, " %s", v->name);
	for (int i = 0; i < r->n_overrides; i++) {
		sb_add(b, " ");
		sb_q(b, r->overrides[i]);
	}
}

/* The rules of variant vi (and the model and token sets it needs). */
static void variant_rules(rules *rs, const qc_recipe *r, int vi)
{
	const qc_recipe__variant *v = &r->variants[vi];
	model_rules(rs, r);
	for (int si = 0; si < v->n_steps; si++)
		if (v->steps[si].calib)
			tokens_rule(rs, r, qc_recipe__find_tokens(r, v->steps[si].calib));
	if (v->eval)
		tokens_rule(rs, r, qc_recipe__find_tokens(r, v->eval));

	sbuf chain = { 0 }, pre = { 0 }, tools = { 0 };
	char *input = strdup(r->model_path);
	if (!input)
		rs->oom = 1;
	for (int si = 0; si < v->n_steps && !rs->oom; si++) {
		const qc_recipe__step *s = &v->steps[si];
		int last = si == v->n_steps - 1;
		char out[512];
		if (s->pipe)
			snprintf(out, sizeof out, "-");
		else
			snprintf(out, sizeof out, "work/%s/%d-%s", v->name, si + 1, s->call.tool->name);
		int piped = chain.n > 0;
		if (piped)
			sb_add(&chain, " | ");
		else
			sb_addf(&pre, "%s", input);
		cmd_step(&chain, r, s, piped ? "-" : input, out);
		if (s->calib)
			sb_addf(&pre, " %s", qc_recipe__find_tokens(r, s->calib)->path);
		sb_addf(&tools, "%s%s", tools.n ? " " : "", s->call.tool->name);
		if (s->pipe && !last)
			continue;
		if (s->pipe && last)
			break;  /* streams into qpack */
		char what[160];
		snprintf(what, sizeof what, "%s: step %d", v->name, si + 1);
		if (chain.oom || pre.oom || tools.oom)
			rs->oom = 1;
		else
			add_rule(rs, out, pre.s, chain.s, tools.s, what);
		free(input);
		input = strdup(out);
		if (!input)
			rs->oom = 1;
		chain.n = pre.n = tools.n = 0;
	}
	for (int fi = 0; fi < v->n_formats && !rs->oom; fi++) {
		const char *fmt = v->formats[fi];
		char out[512], rep[600], what[160];
		snprintf(out, sizeof out, "work/%s/%s", v->name, fmt);
		int piped = chain.n > 0;
		if (piped)
			sb_add(&chain, " | ");
		else
			sb_addf(&pre, "%s", input);
		sb_addf(&chain, "qpack -f %s", fmt);
		sb_opts(&chain, &v->pack);
		sb_addf(&chain, " --force%s -o %s %s", quiet(r), out, piped ? "-" : input);
		sb_addf(&tools, "%sqpack", tools.n ? " " : "");
		snprintf(what, sizeof what, "%s: the %s artifact", v->name, fmt);
		if (chain.oom || pre.oom || tools.oom)
			rs->oom = 1;
		else
			add_rule(rs, out, pre.s, chain.s, tools.s, what);
		chain.n = pre.n = tools.n = 0;
		/* verification: exit 1 (a gate failed) still leaves the report,
		 * which the release step reads */
		snprintf(rep, sizeof rep, "work/%s/verify-%s.json", v->name, fmt);
		sbuf c = { 0 }, p = { 0 };
		sb_addf(&c, "qverify %s --base %s", out, r->model_path);
		sb_addf(&p, "%s %s", out, r->model_path);
		if (v->eval) {
			const char *ep = qc_recipe__find_tokens(r, v->eval)->path;
			sb_addf(&c, " --tokens %s", ep);
			sb_addf(&p, " %s", ep);
		}
		sb_opts(&c, &v->verify);
		sb_addf(&c, "%s -o %s || test $? = 1", quiet(r), rep);
		snprintf(what, sizeof what, "%s: the gates on the %s artifact", v->name, fmt);
		if (c.oom || p.oom)
			rs->oom = 1;
		else
			add_rule(rs, rep, p.s, c.s, "qverify", what);
		free(c.s);
		free(p.s);
	}
	free(input);
	free(chain.s);
	free(pre.s);
	free(tools.s);
	/* the release bundle */
	sbuf c = { 0 }, p = { 0 };
	release_cmd(&c, r, v);
	for (int fi = 0; fi < v->n_formats; fi++)
		sb_addf(&p, "%swork/%s/%s work/%s/verify-%s.json", fi ? " " : "", v->name, v->formats[fi],
		        v->name, v->formats[fi]);
	sb_addf(&p, " %s", r->file);
	char what[160];
	snprintf(what, sizeof what, "%s: the release bundle (a failed gate leaves it out)", v->name);
	if (c.oom || p.oom)
		rs->oom = 1;
	else
		add_rule(rs, v->release_dir, p.s, c.s, "qrecipe", what);
	free(c.s);
	free(p.s);
}

static int build(rules *rs, const qc_recipe *r, int only)
{
	for (int vi = 0; vi < r->n_variants; vi++)
		if (only < 0 || only == vi)
			variant_rules(rs, r, vi);
	if (rs->oom) {
		rules_free(rs);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	return 0;
}

/* ------------------------------------------------------------ output */

static int put(qc_sink *out, const char *s) { return qc_sink_write(out, s, strlen(s)); }

/* s with every '$' doubled, as make wants it in a recipe line */
static int put_make(qc_sink *out, const char *s)
{
	for (const char *p = s; *p;) {
		const char *d = strchr(p, '$');
		size_t k = d ? (size_t)(d - p) : strlen(p);
		QC_TRY(qc_sink_write(out, p, k));
		if (!d)
			break;
		QC_TRY(qc_sink_write(out, "$$", 2));
		p = d + 1;
	}
	return 0;
}

int qc_recipe_commands(const qc_recipe *r, int i, qc_sink *out)
{
	if (i < 0 || i >= r->n_variants)
		return qc_seterr(QC_EINVAL, "no variant %d", i);
	rules rs = { 0 };
	QC_TRY(build(&rs, r, i));
	int rc = 0;
	for (size_t k = 0; k < rs.n && rc == 0; k++) {
		if (!rs.v[k].cmd)
			continue;
		char *c = cmd_text(rs.v[k].cmd, 1);
		rc = !c ? qc_seterr(QC_ENOMEM, "out of memory") : put(out, c);
		if (rc == 0)
			rc = put(out, "\n");
		free(c);
	}
	rules_free(&rs);
	return rc;
}

static const char make_head[] =
	"# Each target is the file or directory that its command writes. The tools\n"
	"# write their outputs atomically, so a target that exists is complete: a\n"
	"# rerun after an interruption or a failure makes only what is missing, older\n"
	"# than its inputs, or made by another command (.qrecipe/TARGET.cmd keeps a\n"
	"# hash of each target's command). Every command is printed as it runs and\n"
	"# can be run by hand. A gate that fails leaves the variant's artifact out of\n"
	"# release/ (its card goes to release/VARIANT.failed/) and make fails.\n"
	"\n"
	".SUFFIXES:\n"
	"SHELL = /bin/sh\n"
	"# need TOOLS: stop with a clear message when a tool is not installed\n"
	"need = @for t in $(1); do command -v $$t >/dev/null 2>&1 || { echo \"qrecipe: cannot make $@: $$t is not installed (not on PATH)\" >&2; exit 127; }; done\n"
	"# stamp FILE,HASH,TARGET: FILE holds the hash of TARGET's command and is\n"
	"# rewritten only when it changes (then an interrupted TARGET.partial is stale)\n"
	"stamp = @mkdir -p $(dir $(1)) && echo $(2) >$(1).new && if cmp -s $(1).new $(1); then rm -f $(1).new; else mv -f $(1).new $(1) && rm -rf $(3).partial; fi\n";

int qc_recipe_makefile(const qc_recipe *r, qc_sink *out)
{
	rules rs = { 0 };
	QC_TRY(build(&rs, r, -1));
	sbuf b = { 0 };
	sb_addf(&b, "# Made by qrecipe %s from %s", QC_VERSION, r->file);
	if (r->n_overrides) {
		sb_add(&b, " with");
		for (int i = 0; i < r->n_overrides; i++) {
			sb_add(&b, " ");
			sb_q(&b, r->overrides[i]);
		}
	}
	sb_add(&b, ".\n# Run it with: qrecipe make ");
	sb_q(&b, r->file);
	for (int i = 0; i < r->n_overrides; i++) {
		sb_add(&b, " ");
		sb_q(&b, r->overrides[i]);
	}
	sb_addf(&b, " | make -f - -j%d [VARIANT...]\n", r->jobs ? r->jobs : 2);
	sb_add(&b, "# Variables:");
	for (int i = 0; i < r->n_vars; i++)
		if (strcmp(r->vars[i].name, "RECIPE_DIR")) {
			sb_addf(&b, " %s=", r->vars[i].name);
			sb_q(&b, r->vars[i].value);
		}
	sb_add(&b, "\n");
	sb_add(&b, make_head);
	if (r->jobs == 1)
		sb_add(&b, "# jobs: 1 in the recipe: one step at a time, whatever -j says\n.NOTPARALLEL:\n");
	sb_add(&b, "\n.PHONY: all FORCE");
	for (int vi = 0; vi < r->n_variants; vi++)
		sb_addf(&b, " %s", r->variants[vi].name);
	sb_add(&b, "\nall:");
	for (int vi = 0; vi < r->n_variants; vi++)
		sb_addf(&b, " %s", r->variants[vi].name);
	sb_add(&b, "\n");
	for (int vi = 0; vi < r->n_variants; vi++)
		sb_addf(&b, "%s: %s\n", r->variants[vi].name, r->variants[vi].release_dir);
	sb_add(&b, "FORCE:\n");
	int rc = b.oom ? qc_seterr(QC_ENOMEM, "out of memory") : put(out, b.s);
	free(b.s);
	for (size_t k = 0; k < rs.n && rc == 0; k++) {
		const rule *x = &rs.v[k];
		sbuf h = { 0 };
		if (!x->cmd) {
			/* an input the recipe names: it must exist */
			sb_addf(&h, "\n# %s\n%s:\n\t@echo \"qrecipe: cannot make %s: it does not exist (%s)\" >&2; "
			        "exit 2\n", x->what, x->target, x->target, x->what);
			rc = h.oom ? qc_seterr(QC_ENOMEM, "out of memory") : put(out, h.s);
			free(h.s);
			continue;
		}
		char hex[17];
		char *run = cmd_text(x->cmd, 1), *id = cmd_text(x->cmd, 0);
		if (!run || !id) {
			free(run);
			free(id);
			rc = qc_seterr(QC_ENOMEM, "out of memory");
			break;
		}
		qc_h64_hex(qc_xxh3_64(id, strlen(id)), hex);
		free(id);
		sb_addf(&h, "\n# %s\n%s:%s%s .qrecipe/%s.cmd\n\t$(call need,%s)\n\t", x->what, x->target,
		        *x->prereq ? " " : "", x->prereq, x->target, x->tools);
		if (h.oom)
			rc = qc_seterr(QC_ENOMEM, "out of memory");
		if (rc == 0)
			rc = put(out, h.s);
		if (rc == 0)
			rc = put_make(out, run);
		free(run);
		free(h.s);
		h = (sbuf){ 0 };
		sb_addf(&h, "\n.qrecipe/%s.cmd: FORCE\n\t$(call stamp,$@,%s,%s)\n", x->target, hex, x->target);
		if (rc == 0)
			rc = h.oom ? qc_seterr(QC_ENOMEM, "out of memory") : put(out, h.s);
		free(h.s);
	}
	rules_free(&rs);
	return rc;
}
