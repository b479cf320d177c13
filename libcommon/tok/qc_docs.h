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
 * Rows: a token set's [n, len] ids and each row's length, filled from
 * documents (pack or pad, man/qcalib.1 "--mode") or at random.
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
#include "qc_tok.h"

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

/* Read path (as qc_docs_read_input; *hash set) and append its documents:
 * JSON Lines when field or tmpl is given (named "<stdin>" for "-" in
 * messages), else plain text cut by split. */
int qc_docs_add_input(qc_docs *d, const char *path, const char *field, const char *tmpl, int strict,
                      qc_docs_split split, qc_h128 *hash);

/* The ids a token set for the model in dir records: the vocabulary size
 * (config.json's vocab_size when present, which may exceed the
 * tokenizer's ids but never fall short of them: QC_EINVAL), EOS (the
 * tokenizer's, else config.json's first eos_token_id, else -1) and the pad
 * id (EOS, else 0). A directory without a readable config.json gives the
 * tokenizer's own. */
int qc_docs_model_ids(const char *dir, const qc_tok *t, int64_t *vocab, int32_t *eos, int32_t *pad);

/* Token rows for a token set (qc_tokset_spec): ids [cap, len] row-major,
 * lens [cap]; the first n rows are filled. */
typedef struct qc_rows {
	int32_t *ids;
	int32_t *lens;
	int64_t n, cap, len;
} qc_rows;

/* cap rows of len tokens, zeroed, none filled. QC_ENOMEM. */
int qc_rows_alloc(qc_rows *r, int64_t cap, int64_t len);
void qc_rows_free(qc_rows *r);   /* and zero it */
/* Tokens in the filled rows (the sum of their lengths). */
int64_t qc_rows_tokens(const qc_rows *r);

/* Fill every row with ids drawn uniformly (qc_rng stream "qcalib random" of
 * seed) from the ordinary ids below vocab (QC_TOK_ID_NORMAL: what a model
 * meets in text). QC_EINVAL when there are none, QC_ENOMEM. */
int qc_rows_random(qc_rows *r, const qc_tok *t, int64_t vocab, uint64_t seed);

/* pack: the documents in order, each encoded without specials and followed
 * by eos, concatenated and cut into full rows (an incomplete last row is
 * dropped). *used: documents read; *produced: tokens taken. Errors of the
 * tokenizer, QC_ENOMEM. */
int qc_rows_pack(qc_rows *r, qc_tok *t, const qc_docs *d, int32_t eos, int64_t *used,
                 int64_t *produced);

/* pad: one document per row, encoded with the tokenizer's own BOS/EOS,
 * truncated to len, the rest of the row pad (its length says where). */
int qc_rows_pad(qc_rows *r, qc_tok *t, const qc_docs *d, int32_t pad, int64_t *used);

#endif
