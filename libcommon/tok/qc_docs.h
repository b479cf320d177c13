/*
 * qc_docs.h - calibration documents: a text or JSON Lines corpus cut into
 * the documents qcalib tokenizes (man/qcalib.1, "Input").
 *
 * Plain text is cut into lines, paragraphs (runs of non-blank lines,
 * separated by blank ones) or kept whole; a line's trailing CR is dropped,
 * a blank line holds only spaces, tabs, CR, FF and VT, and a whole text
 * only those and newlines is no document. JSON Lines give one
 * document per record: the text of one field (strings as they are, numbers
 * and other scalars as JSON writes them) or a template whose {name} parts
 * are fields ("{{" and "}}" are braces, \n and \t escapes). Records that are
 * not objects, or lack a field, are counted and skipped, or refused with
 * "name line N: ..." when strict.
 *
 * Ownership: a qc_docs owns its documents' bytes (each NUL-terminated);
 * qc_docs_free releases them. Documents keep the order of the input until
 * qc_docs_shuffle.
 */
#ifndef QC_DOCS_H
#define QC_DOCS_H

#include <stddef.h>
#include <stdint.h>

#include "qc_hash.h"

typedef struct qc_doc {
	char *p;           /* n bytes and a NUL */
	size_t n;
} qc_doc;

typedef struct qc_docs {
	qc_doc *v;
	size_t n, cap;
	int64_t records;              /* non-blank JSON Lines read */
	int64_t skipped_not_object;   /* of which not a JSON object */
	int64_t skipped_no_field;     /* of which without the field(s) */
} qc_docs;

typedef enum {
	QC_DOCS_LINES,        /* every non-blank line */
	QC_DOCS_PARAGRAPHS,   /* blank-line separated runs */
	QC_DOCS_WHOLE         /* the whole text, unless blank */
} qc_docs_split;

/* Append the documents of plain text p[n]. QC_ENOMEM. */
int qc_docs_add_text(qc_docs *d, const char *p, size_t n, qc_docs_split split);

/* QC_EINVAL with the reason when a template's braces do not pair: check
 * once, before reading any input. */
int qc_docs_check_template(const char *tmpl);

/* Append the documents of JSON Lines p[n] read from `name`: exactly one of
 * field (a field name) and tmpl (a checked template) is non-NULL. Empty
 * texts are skipped silently. QC_EFORMAT (strict only), QC_ENOMEM. */
int qc_docs_add_jsonl(qc_docs *d, const char *name, const char *p, size_t n, const char *field,
                      const char *tmpl, int strict);

/* A seeded Fisher-Yates shuffle (qc_rng stream "qcalib shuffle"): the same
 * seed gives the same order on every machine. */
void qc_docs_shuffle(qc_docs *d, uint64_t seed);

void qc_docs_free(qc_docs *d);   /* and zero it; an empty qc_docs is fine */

/* Read all of path (a file, "-" for standard input, .zst decompressed;
 * qc_io.h) into new memory *data (free it) of *len bytes, and its XXH3-128.
 * QC_EIO, QC_ENOMEM. */
int qc_docs_read_input(const char *path, char **data, size_t *len, qc_h128 *hash);

#endif
