/*
 * qc_tokset.h - token set files (doc/design.md 3.4): the calibration or
 * evaluation tokens that qcalib writes and the quantizers and qverify read.
 *
 * A token set is a safetensors file with exactly two tensors
 *   input_ids  I32 [N, L]   row-major; row i holds lengths[i] valid tokens
 *                           followed by padding (pad_id), right-padded
 *   lengths    I32 [N]      0 <= lengths[i] <= L
 * and these __metadata__ keys (safetensors metadata values are strings):
 *   format             "pt" (transformers requires it)
 *   qc_token_set       "1", the layout version
 *   tokenizer_xxh3_128 XXH3-128 of the tokenizer.json (or tokenizer.model) bytes (32 hex)
 *   vocab_size         every valid id is in [0, vocab_size)
 *   pad_id, bos_id, eos_id   decimal, -1 when the tokenizer has none
 *   seed               decimal seed of every random choice
 *   sources            JSON array [{"name": ..., "xxh3_128": ...}], inputs
 *                      in command-line order ("<stdin>" for stdin)
 *   options            JSON object of the options that shaped the set
 *   n_tokens           the sum of lengths
 * Data is little-endian (safetensors); this module assumes a little-endian
 * host, as the rest of the toolkit does.
 *
 * The reader validates everything above before it hands out a pointer: the
 * two tensors and nothing else, dtypes, shapes, lengths in range, every
 * valid id in range, n_tokens consistent, required keys present. A failure
 * is QC_EFORMAT naming the file. A file with N = 0 rows is malformed.
 */
#ifndef QC_TOKSET_H
#define QC_TOKSET_H

#include <stddef.h>
#include <stdint.h>

#include "qc_hash.h"
#include "qc_io.h"
#include "qc_tok.h"

#define QC_TOKSET_VERSION "1"

/* ---- reading ---- */

typedef struct qc_tokset qc_tokset;

/* Open and validate path ("-" reads the whole of stdin into memory). The
 * reader keeps the file mapped; pointers it returns live until close. */
int qc_tokset_open(qc_tokset **out, const char *path);
/* The same for an in-memory file image (copied). */
int qc_tokset_open_mem(qc_tokset **out, const void *data, size_t len, const char *name);
void qc_tokset_close(qc_tokset *ts);            /* NULL is a no-op */

int64_t qc_tokset_rows(const qc_tokset *ts);    /* N */
int64_t qc_tokset_len(const qc_tokset *ts);     /* L */
/* input_ids [N, L] and lengths [N]. */
const int32_t *qc_tokset_ids(const qc_tokset *ts);
const int32_t *qc_tokset_lengths(const qc_tokset *ts);
/* Row i: its L ids; *len (may be NULL) gets lengths[i]. i must be < N. */
const int32_t *qc_tokset_row(const qc_tokset *ts, int64_t i, int32_t *len);
int64_t qc_tokset_n_tokens(const qc_tokset *ts);
int64_t qc_tokset_vocab_size(const qc_tokset *ts);
/* A __metadata__ value, or NULL. */
const char *qc_tokset_meta(const qc_tokset *ts, const char *key);
/* XXH3-128 of the whole file: the hash manifests record for a token set. */
qc_h128 qc_tokset_hash(const qc_tokset *ts);
const char *qc_tokset_name(const qc_tokset *ts);
/* What `qcalib --show` prints: file, hash, rows, length, token counts,
 * vocabulary, special ids, tokenizer, seed, options and sources, a line
 * each (malloc'd text; NULL when out of memory). */
char *qc_tokset_describe(const qc_tokset *ts);

/* What `qcalib --show --decode i` prints: row i (0 <= i < rows) decoded by
 * t (qc_tok_decode, specials as text) into *text (malloc'd, *len bytes);
 * *same = whether tok_hash (the hash of t's file) is the tokenizer hash ts
 * was made with. Errors of qc_tok_decode. */
int qc_tokset_decode_row(const qc_tokset *ts, const qc_tok *t, qc_h128 tok_hash, int64_t i,
                         char **text, size_t *len, int *same);

/* ---- writing ---- */

/* What a token set is made of. Strings are copied; arrays are only read. */
typedef struct qc_tokset_spec {
	int64_t n, l;                /* rows, tokens per row (both >= 1) */
	const int32_t *ids;          /* [n, l]; padding must equal pad_id */
	const int32_t *lengths;      /* [n] */
	int64_t vocab_size;
	int32_t pad_id, bos_id, eos_id;
	qc_h128 tokenizer_hash;
	uint64_t seed;
	const char *sources;         /* JSON array text, as described above */
	const char *options;         /* JSON object text */
} qc_tokset_spec;

/* Validate spec (the same rules as the reader: QC_EINVAL here) and write the
 * file to a sink, or to path through a temporary file and a rename. The
 * bytes depend only on spec: the same spec gives the same file. */
int qc_tokset_emit(const qc_tokset_spec *spec, qc_sink *sink);
int qc_tokset_save(const qc_tokset_spec *spec, const char *path);

#endif
