/*
 * qc_report.h - the per-Linear error report (doc/design.md 3.5), JSON Lines.
 *
 * One object per quantized Linear, keys in this order (jq is the intended
 * reader):
 *   tool, layer, shape, scheme, group_size, symmetric, n_tokens,
 *   err_out, err_w, err_rtn, seconds, then method-specific keys.
 * err_out  = ||(W - Q) X||^2 / ||W X||^2 over the calibration inputs,
 * err_w    = ||W - Q||^2 / ||W||^2,
 * err_rtn  = err_out of plain round-to-nearest at the same scheme;
 * err_out and err_rtn are null when no calibration tokens were used, and
 * n_tokens is 0 then. Non-finite numbers are written as null.
 *
 * A qc_report accumulates lines in memory (they are small: one per Linear,
 * 7 per decoder layer) and is written to --report FILE and into the output
 * checkpoint as quant_report.jsonl. Wall time is not a property of the
 * artifact: the copy inside the checkpoint has "seconds": null, so that the
 * same inputs and options give byte-identical checkpoints (doc/design.md 6.1); the
 * --report file keeps the measured seconds.
 */
#ifndef QC_REPORT_H
#define QC_REPORT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define QC_REPORT_NAME "quant_report.jsonl"

typedef struct qc_report qc_report;

typedef struct qc_report_line {
	const char *tool;       /* "qgptq" */
	const char *layer;      /* module name: "model.layers.3.mlp.down_proj" */
	int64_t rows, cols;     /* shape [out, in] */
	const char *scheme;     /* "w4a16", "fp8-dynamic", ... */
	int64_t group_size;     /* -1 when not grouped */
	int symmetric;
	int64_t n_tokens;
	double err_out, err_w, err_rtn;  /* NAN for "not measured" */
	double seconds;
	json_t *extra;          /* method-specific keys (object, reference stolen) or NULL */
} qc_report_line;

qc_report *qc_report_new(void);               /* NULL on out of memory */
void qc_report_free(qc_report *r);            /* NULL is a no-op */
int qc_report_add(qc_report *r, const qc_report_line *line);
size_t qc_report_count(const qc_report *r);
/* Line i (0-based) as the object written (borrowed; NULL when out of
 * range): what a resume record stores to add the line again. */
const json_t *qc_report_line_at(const qc_report *r, size_t i);
/* Add a line given as such an object (a deep copy is stored). */
int qc_report_add_json(qc_report *r, const json_t *line);
/* The whole report as JSON Lines text (malloc'd, NUL-terminated); with
 * with_seconds 0, every "seconds" is null (the checkpoint's copy). */
int qc_report_text(const qc_report *r, int with_seconds, char **text, size_t *len);
/* Write the report (with seconds) to path atomically. */
int qc_report_save(const qc_report *r, const char *path);

/* Relative errors from sums: num / den, NAN when den is 0. */
double qc_rel(double num, double den);

#endif
