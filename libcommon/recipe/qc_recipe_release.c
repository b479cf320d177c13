/* qc_recipe_release.c - a variant's release bundle: the packed artifacts
 * (hard links of what qpack wrote), the per-Linear report, the qverify
 * reports and quant_card.md with the recipe and the gate results
 * (qc_recipe.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_hash.h"
#include "qc_io.h"
#include "qc_recipe_int.h"

#ifndef QC_VERSION
#define QC_VERSION "0"
#endif

/* a file into another place: a hard link, or a copy across file systems */
static int link_file(const char *src, const char *dst)
{
	if (link(src, dst) == 0)
		return 0;
	if (errno != EXDEV && errno != EPERM && errno != EMLINK)
		return qc_seterr(QC_EIO, "cannot link '%s' to '%s': %s", src, dst, strerror(errno));
	/* a copy, a piece at a time: shards are gigabytes */
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return qc_seterr(QC_EIO, "cannot open '%s': %s", src, strerror(errno));
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		close(in);
		return qc_seterr(QC_EIO, "cannot create '%s': %s", dst, strerror(errno));
	}
	qc_sink s;
	qc_sink_fd(&s, out, dst);
	static const size_t piece = (size_t)1 << 20;
	char *buf = malloc(piece);
	int rc = buf ? 0 : qc_seterr(QC_ENOMEM, "out of memory");
	while (rc == 0) {
		ssize_t n = read(in, buf, piece);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = qc_seterr(QC_EIO, "cannot read '%s': %s", src, strerror(errno));
		if (n <= 0)
			break;
		rc = qc_sink_write(&s, buf, (size_t)n);
	}
	free(buf);
	close(in);
	if (close(out) != 0 && rc == 0)
		rc = qc_seterr(QC_EIO, "cannot write '%s': %s", dst, strerror(errno));
	return rc;
}

/* the regular files of directory src into a new directory dst */
static int link_dir(const char *src, const char *dst)
{
	if (mkdir(dst, 0755) != 0)
		return qc_seterr(QC_EIO, "cannot create '%s': %s", dst, strerror(errno));
	DIR *d = opendir(src);
	if (!d)
		return qc_seterr(QC_EIO, "cannot read '%s': %s", src, strerror(errno));
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *s = qc_path_join(src, e->d_name), *t = qc_path_join(dst, e->d_name);
		struct stat st;
		if (!s || !t)
			rc = qc_seterr(QC_ENOMEM, "out of memory");
		else if (stat(s, &st) == 0 && S_ISREG(st.st_mode))
			rc = link_file(s, t);
		free(s);
		free(t);
	}
	closedir(d);
	return rc;
}

typedef struct verdict {
	const char *fmt;
	json_t *j;              /* the qverify report */
	int pass;
} verdict;

static const char *jstr(json_t *o, const char *a, const char *b)
{
	json_t *x = json_object_get(o, a);
	if (b)
		x = json_object_get(x, b);
	return json_is_string(x) ? json_string_value(x) : NULL;
}

static int jnum(json_t *o, const char *a, const char *b, double *v)
{
	json_t *x = json_object_get(json_object_get(o, a), b);
	if (!json_is_number(x))
		return 0;
	*v = json_number_value(x);
	return 1;
}

typedef struct sb {
	char *s;
	size_t n, cap;
	int oom;
} sb;

static void add(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(sb *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = 1;
		return;
	}
	if (b->n + (size_t)n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + (size_t)n + 1)
			cap *= 2;
		char *g = realloc(b->s, cap);
		if (!g) {
			free(s);
			b->oom = 1;
			return;
		}
		b->s = g;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, (size_t)n + 1);
	b->n += (size_t)n;
	free(s);
}

static const char *loads_in(const char *fmt)
{
	if (strcmp(fmt, "gptq") == 0)
		return "vLLM (gptq, Marlin), transformers, AutoGPTQ";
	if (strcmp(fmt, "awq") == 0)
		return "vLLM (awq, Marlin), transformers, AutoAWQ";
	return "vLLM, transformers (compressed-tensors)";
}

static void gate_row(sb *b, const verdict *v, const char *check, const char *key, const char *thr,
                     const char *cmp, int lower_is_better)
{
	double m, t;
	int have_m = jnum(v->j, "function", key, &m);
	int have_t = jnum(v->j, "thresholds", thr, &t);
	if (!have_m && !have_t)
		return;
	char ms[32] = "not measured", ts[40] = "none";
	if (have_m)
		snprintf(ms, sizeof ms, "%.6g", m);
	if (have_t)
		snprintf(ts, sizeof ts, "%s %.6g", cmp, t);
	const char *res = !have_t ? "reported" : !have_m ? "fail"
	                : (lower_is_better ? m <= t : m >= t) ? "pass" : "fail";
	add(b, "| %s | %s | %s | %s | %s |\n", v->fmt, check, ts, ms, res);
}

static int card(qc_recipe *r, int vi, const verdict *vs, int n, int pass, const char *dir, char **out)
{
	const qc_recipe__variant *v = &r->variants[vi];
	sb b = { 0 };
	add(&b, "# %s: %s\n\n", r->model_name, v->name);
	add(&b, "Made by qtoolkit %s (qrecipe) from the recipe `%s`, variant `%s`", QC_VERSION, r->file,
	    v->name);
	int nset = 0;
	for (int i = 0; i < r->n_vars; i++)
		if (r->vars[i].set)
			add(&b, "%s`%s=%s`", nset++ ? ", " : ", with ", r->vars[i].name, r->vars[i].value);
	add(&b, ".\n\n## Release gates\n\n");
	if (r->gates_off)
		add(&b, "Gates: **off** (GATES=off): the thresholds of the recipe were not applied; "
		    "what follows was measured, not gated. Verdict on integrity: **%s**.\n\n",
		    pass ? "pass" : "fail");
	else if (pass)
		add(&b, "Verdict: **pass**. Every artifact met every gate; they are in this directory.\n\n");
	else
		add(&b, "Verdict: **fail**. The artifacts are left out of the release; the reports below "
		    "say why.\n\n");
	add(&b, "| artifact | check | gate | measured | result |\n|---|---|---|---|---|\n");
	for (int i = 0; i < n; i++) {
		const char *man = jstr(vs[i].j, "integrity", "manifest");
		json_t *ok = json_object_get(json_object_get(vs[i].j, "integrity"), "ok");
		add(&b, "| %s | integrity | manifest and tensors | %s | %s |\n", vs[i].fmt, man ? man : "checked",
		    json_is_true(ok) ? "pass" : "fail");
		gate_row(&b, &vs[i], "perplexity ratio", "ppl_ratio", "max_ppl_ratio", "<=", 1);
		gate_row(&b, &vs[i], "mean KL(base || artifact)", "kl_mean", "max_kl", "<=", 1);
		gate_row(&b, &vs[i], "top-1 agreement", "top1", "min_top1", ">=", 0);
	}
	for (int i = 0; i < n; i++) {
		json_t *f = json_object_get(vs[i].j, "failures");
		size_t k;
		json_t *x;
		json_array_foreach(f, k, x)
			if (json_is_string(x))
				add(&b, "%s- %s: %s\n", k == 0 && i == 0 ? "\nFailures:\n\n" : "", vs[i].fmt,
				    json_string_value(x));
	}
	const char *tokens = jstr(vs[0].j, "tokens", NULL);
	if (tokens)
		add(&b, "\nMeasured against the base model `%s` on the token set `%s`, with the artifact "
		    "computed as the deployment kernels compute it (qverify; `verify-FORMAT.json` holds "
		    "everything it measured).\n", r->model_path, tokens);
	if (pass) {
		add(&b, "\n## Artifacts\n\n| directory | loads in | quant_manifest.json (XXH3-128) |\n|---|---|---|\n");
		for (int i = 0; i < n; i++) {
			char *m = qc_recipe__printf(r, "%s/%s/quant_manifest.json", dir, vs[i].fmt);
			qc_h128 h;
			char hex[33] = "(none)";
			if (m && qc_hash_file(m, &h, NULL) == 0)
				qc_h128_hex(h, hex);
			add(&b, "| `%s/` | %s | `%s` |\n", vs[i].fmt, loads_in(vs[i].fmt), hex);
		}
		add(&b, "\nEach directory is the artifact as qpack wrote it, with its own `quant_card.md` "
		    "(scheme, calibration, the layers that lost the most) and `quant_manifest.json` "
		    "(`qcat --verify DIR` checks every file and tensor against it). "
		    "`quant_report.jsonl` here is the per-Linear error report.\n");
	}
	add(&b, "\n## Commands\n\nThe commands that made it, in order (each also in the Makefile "
	    "`qrecipe make` prints):\n\n");
	qc_membuf mb = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &mb, "commands");
	int rc = qc_recipe_commands(r, vi, &s);
	if (rc == 0 && mb.data) {
		for (char *p = (char *)mb.data, *e; *p; p = e + 1) {
			e = strchr(p, '\n');
			if (!e)
				break;
			add(&b, "    %.*s\n", (int)(e - p), p);
		}
	}
	qc_membuf_free(&mb);
	add(&b, "\n## Recipe\n\n`%s`:\n\n```yaml\n%s%s```\n", r->file, r->text,
	    r->text_len && r->text[r->text_len - 1] != '\n' ? "\n" : "");
	if (rc == 0 && b.oom)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	if (rc != 0) {
		free(b.s);
		return rc;
	}
	*out = b.s;
	return 0;
}

int qc_recipe_release(qc_recipe *r, int vi)
{

	if (vi < 0 || vi >= r->n_variants)
		return qc_seterr(QC_EINVAL, "no variant %d", vi);
	const qc_recipe__variant *v = &r->variants[vi];
	verdict vs[8] = { { 0 } };
	int n = v->n_formats < 8 ? v->n_formats : 8, rc = 0, pass = 1;
	for (int i = 0; i < n && rc == 0; i++) {
		char *art = qc_recipe__printf(r, "work/%s/%s", v->name, v->formats[i]);
		char *rep = qc_recipe__printf(r, "work/%s/verify-%s.json", v->name, v->formats[i]);
		if (!art || !rep)
			return QC_ENOMEM;
		vs[i].fmt = v->formats[i];
		if (!qc_is_dir(art)) {
			rc = qc_seterr(QC_ENOTFOUND, "cannot release '%s': '%s' is missing", v->name, art);
			break;
		}
		char *text;
		size_t len;
		if ((rc = qc_read_file(rep, (size_t)64 << 20, &text, &len)) != 0) {
			rc = qc_errctx(rc == QC_EIO ? QC_ENOTFOUND : rc, "cannot release '%s'", v->name);
			break;
		}
		json_error_t je;
		vs[i].j = json_loadb(text, len, 0, &je);
		free(text);
		const char *vd = vs[i].j ? jstr(vs[i].j, "verdict", NULL) : NULL;
		if (!vd) {
			rc = qc_seterr(QC_EFORMAT, "cannot release '%s': '%s' is not a qverify report", v->name, rep);
			break;
		}
		vs[i].pass = strcmp(vd, "pass") == 0;
		pass &= vs[i].pass;
	}
	char *final = v->release_dir;
	char *partial = qc_recipe__printf(r, "%s.partial", final);
	char *failed = qc_recipe__printf(r, "%s.failed", final);
	char *failed_tmp = qc_recipe__printf(r, "%s.failed.partial", final);
	char *old = qc_recipe__printf(r, "%s.old", final);
	char *dest = pass ? partial : failed_tmp;
	if (!partial || !failed || !failed_tmp || !old)
		rc = QC_ENOMEM;
	char *cardtext = NULL;
	if (rc == 0) {
		qc_rmtree(partial);
		qc_rmtree(failed_tmp);
		qc_rmtree(failed);
		qc_rmtree(old);
		if (!pass)
			qc_rmtree(final);   /* what no longer passes is no release */
		rc = qc_mkdirs(dest, 0755);
	}
	for (int i = 0; i < n && rc == 0; i++) {
		char *art = qc_recipe__printf(r, "work/%s/%s", v->name, vs[i].fmt);
		char *to = qc_recipe__printf(r, "%s/%s", dest, vs[i].fmt);
		char *rep = qc_recipe__printf(r, "work/%s/verify-%s.json", v->name, vs[i].fmt);
		char *rto = qc_recipe__printf(r, "%s/verify-%s.json", dest, vs[i].fmt);
		if (!art || !to || !rep || !rto) {
			rc = QC_ENOMEM;
			break;
		}
		if (pass)
			rc = link_dir(art, to);
		if (rc == 0)
			rc = link_file(rep, rto);
		if (rc == 0 && i == 0) {
			char *jl = qc_recipe__printf(r, "%s/quant_report.jsonl", art);
			char *jt = qc_recipe__printf(r, "%s/quant_report.jsonl", dest);
			struct stat st;
			if (!jl || !jt)
				rc = QC_ENOMEM;
			else if (stat(jl, &st) == 0)
				rc = link_file(jl, jt);
		}
	}
	if (rc == 0)
		rc = card(r, vi, vs, n, pass, dest, &cardtext);
	if (rc == 0) {
		char *cp = qc_recipe__printf(r, "%s/quant_card.md", dest);
		rc = cp ? qc_write_file_atomic(cp, cardtext, strlen(cardtext)) : QC_ENOMEM;
	}
	free(cardtext);
	if (rc == 0) {
		const char *to = pass ? final : failed;
		int had = pass && qc_is_dir(final);
		if (had && rename(final, old) != 0)
			rc = qc_seterr(QC_EIO, "cannot move '%s' aside: %s", final, strerror(errno));
		if (rc == 0 && rename(dest, to) != 0)
			rc = qc_seterr(QC_EIO, "cannot rename '%s' to '%s': %s", dest, to, strerror(errno));
		if (had)
			qc_rmtree(old);
	}
	if (rc != 0 && dest)
		qc_rmtree(dest);
	if (rc == 0 && !pass) {
		const char *why = "a gate failed";
		const char *fmt = "";
		for (int i = 0; i < n; i++)
			if (!vs[i].pass) {
				json_t *f = json_array_get(json_object_get(vs[i].j, "failures"), 0);
				if (json_is_string(f))
					why = json_string_value(f);
				fmt = vs[i].fmt;
				break;
			}
		rc = qc_seterr(QC_EINTEGRITY, "%s: %s artifact: %s; it is left out of the release (see "
		               "%s/quant_card.md)", v->name, fmt, why, failed);
	}
	for (int i = 0; i < n; i++)
		json_decref(vs[i].j);
	return rc;
}
