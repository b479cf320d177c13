/*
 * qc_card.h - quant_card.md, the README-style summary a release artifact
 * carries (doc/design.md 3.3, 3.6): what was quantized how, by which commands,
 * on which calibration data, stored in which format, and which layers lost
 * the most.
 *
 * Sections, in this order (Markdown, plain ASCII apart from what the inputs
 * hold, deterministic: the same inputs give the same bytes):
 *   # <title>
 *   ## Scheme       weights (bits, type, strategy, group, symmetry),
 *                   input activations, ignored modules, KV cache
 *   ## Format       the on-disk format and what loads it, with the notes of
 *                   qc_card_info.notes (e.g. how scales were converted)
 *   ## Method       the manifest's history, oldest first: tool, version and
 *                   the command line, one per line
 *   ## Calibration  the manifest's token sets (role, XXH3-128), the token
 *                   count of the report, the base model's fingerprint
 *   ## Worst layers the `worst` report lines with the highest err_out (or
 *                   err_w when err_out is null), as a table with err_out,
 *                   err_w, err_rtn; a line saying so when there is no report
 *   ## Files        the shard count and the integrity note (quant_manifest.json)
 * The card never states what the inputs do not say: a missing manifest or
 * report is written as "not recorded".
 */
#ifndef QC_CARD_H
#define QC_CARD_H

#include <stddef.h>

#include "qc_manifest.h"
#include "qc_qscheme.h"

#define QC_CARD_NAME "quant_card.md"

typedef struct qc_card_info {
	const char *title;          /* e.g. the model's architecture; NULL: "Quantized model" */
	const qc_qscheme *scheme;   /* the naive scheme quantized with (required) */
	const char *format;         /* "compressed-tensors pack-quantized", "gptq (v1)", ... */
	const char *loaders;        /* a sentence on what loads it, or NULL */
	const char *const *notes;   /* extra lines for the Format section */
	size_t n_notes;
	const qc_manifest *manifest;/* the input's manifest, or NULL */
	const char *report;         /* quant_report.jsonl text, or NULL */
	size_t report_len;
	int worst;                  /* report lines listed (0: 5) */
	int n_shards;
	const char *run_tool;       /* this run (appended to the history), or NULL */
	const char *run_version;
	int run_argc;
	char *const *run_argv;
} qc_card_info;

/* Build the card into a malloc'd NUL-terminated string. Malformed report
 * lines are QC_EFORMAT naming the line number. */
int qc_card_markdown(const qc_card_info *info, char **md, size_t *len);

#endif
