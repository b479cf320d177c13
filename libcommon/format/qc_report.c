/* qc_report.c - JSON Lines error report (see qc_report.h). */
#include "qc_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_vec.h"

struct qc_report {
	json_t **lines;   /* one object per line, keys in qc_report.h's order */
	size_t n, cap;
};

qc_report *qc_report_new(void)
{
	return calloc(1, sizeof(qc_report));
}

void qc_report_free(qc_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		json_decref(r->lines[i]);
	free(r->lines);
	free(r);
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* Store line o (reference stolen, also on failure). */
static int append(qc_report *r, json_t *o)
{
	int rc = qc_grow((void **)&r->lines, &r->cap, r->n + 1, sizeof *r->lines);
	if (rc < 0) {
		json_decref(o);
		return rc;
	}
	r->lines[r->n++] = o;
	return 0;
}

int qc_report_add(qc_report *r, const qc_report_line *l)
{
	/* JSON_PRESERVE_ORDER keeps the fixed key order (qc_report.h) */
	json_t *o = json_object();
	if (!o) {
		json_decref(l->extra);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	json_object_set_new(o, "tool", json_string(l->tool));
	json_object_set_new(o, "layer", json_string(l->layer));
	json_t *shape = json_array();
	json_array_append_new(shape, json_integer(l->rows));
	json_array_append_new(shape, json_integer(l->cols));
	json_object_set_new(o, "shape", shape);
	json_object_set_new(o, "scheme", json_string(l->scheme));
	json_object_set_new(o, "group_size", json_integer(l->group_size));
	json_object_set_new(o, "symmetric", json_boolean(l->symmetric));
	json_object_set_new(o, "n_tokens", json_integer(l->n_tokens));
	json_object_set_new(o, "err_out", num_or_null(l->err_out));
	json_object_set_new(o, "err_w", num_or_null(l->err_w));
	json_object_set_new(o, "err_rtn", num_or_null(l->err_rtn));
	json_object_set_new(o, "seconds", num_or_null(l->seconds));
	if (l->extra) {
		const char *k;
		json_t *v;
		json_object_foreach(l->extra, k, v)
			json_object_set(o, k, v);
		json_decref(l->extra);
	}
	return append(r, o);
}

size_t qc_report_count(const qc_report *r)
{
	return r->n;
}

const json_t *qc_report_line_at(const qc_report *r, size_t i)
{
	return i < r->n ? r->lines[i] : NULL;
}

int qc_report_add_json(qc_report *r, const json_t *line)
{
	json_t *o = json_deep_copy(line);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return qc_seterr(o ? QC_EINVAL : QC_ENOMEM, o ? "a report line must be an object"
		                                            : "out of memory");
	}
	return append(r, o);
}

int qc_report_text(const qc_report *r, int with_seconds, char **text, size_t *len)
{
	size_t cap = 0, used = 0;
	char *t = NULL;
	int rc = qc_grow((void **)&t, &cap, 1, 1);
	for (size_t i = 0; i < r->n && rc == 0; i++) {
		json_t *o = r->lines[i];
		json_t *secs = json_object_get(o, "seconds");
		json_incref(secs);
		if (!with_seconds)
			json_object_set_new(o, "seconds", json_null());
		char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(6));
		json_object_set_new(o, "seconds", secs);
		size_t n = s ? strlen(s) : 0;
		rc = s ? qc_grow((void **)&t, &cap, used + n + 2, 1) : qc_seterr(QC_ENOMEM, "out of memory");
		if (rc == 0) {
			memcpy(t + used, s, n);
			used += n;
			t[used++] = '\n';
			t[used] = 0;
		}
		free(s);
	}
	if (rc < 0) {
		free(t);
		return rc;
	}
	*text = t;
	*len = used;
	return 0;
}

int qc_report_save(const qc_report *r, const char *path)
{
	char *t;
	size_t n;
	QC_TRY(qc_report_text(r, 1, &t, &n));
	int rc = qc_write_file_atomic(path, t, n);
	free(t);
	return rc;
}

double qc_rel(double num, double den)
{
	return den > 0 ? num / den : NAN;
}
