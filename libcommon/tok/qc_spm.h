/*
 * qc_spm.h - SentencePiece model files (tokenizer.model): read and write
 * the few fields of its protobuf (sentencepiece_model.proto, ModelProto)
 * that encoding needs. qc_tok.h builds a tokenizer from what is read here.
 *
 * Fields read (everything else is skipped, as protobuf readers do):
 *   ModelProto      1 pieces (repeated message)   2 trainer_spec
 *                   3 normalizer_spec
 *   SentencePiece   1 piece (string)  2 score (float)  3 type (enum, default
 *                   NORMAL=1; UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5
 *                   BYTE=6)
 *   TrainerSpec     3 model_type (UNIGRAM=1 default, BPE=2, WORD=3, CHAR=4)
 *                   24 treat_whitespace_as_suffix  35 byte_fallback
 *                   40 unk_id  41 bos_id (default 1)  42 eos_id (default 2)
 *   NormalizerSpec  1 name  2 precompiled_charsmap (only its length is kept)
 *                   3 add_dummy_prefix  4 remove_extra_whitespaces
 *                   5 escape_whitespaces (all three default true)
 *
 * The reader is bounded: every length and varint is checked against the
 * bytes left (a varint is at most 10 bytes), messages nest at most the
 * three levels above, wire types 3 and 4 (groups) and unknown wire types are
 * QC_EFORMAT, pieces are limited to QC_SPM_MAX_PIECES and each to 8000 bytes
 * (SentencePiece's own limit), and a piece may not be empty or hold a NUL.
 * Messages name the field ("bad tokenizer.model 'P': piece 12: length runs
 * past the end").
 *
 * Ownership: a qc_spm owns its pieces' strings (one arena); qc_spm_free
 * releases everything. Not thread-safe to free while read.
 */
#ifndef QC_SPM_H
#define QC_SPM_H

#include <stddef.h>
#include <stdint.h>

#define QC_SPM_MAX_PIECES (1 << 22)
#define QC_SPM_MAX_FILE (256u << 20)

typedef enum {
	QC_SPM_NORMAL = 1,
	QC_SPM_UNKNOWN = 2,
	QC_SPM_CONTROL = 3,
	QC_SPM_USER_DEFINED = 4,
	QC_SPM_UNUSED = 5,
	QC_SPM_BYTE = 6,
} qc_spm_type;

typedef enum {
	QC_SPM_UNIGRAM = 1,
	QC_SPM_BPE = 2,
	QC_SPM_WORD = 3,
	QC_SPM_CHAR = 4,
} qc_spm_model_type;

typedef struct qc_spm_piece {
	const char *s;            /* NUL-terminated, in the model's arena */
	uint32_t len;
	float score;
	int type;                 /* qc_spm_type (other values kept as read) */
} qc_spm_piece;

typedef struct qc_spm {
	qc_spm_piece *pieces;     /* [n_pieces], id = index */
	int64_t n_pieces;
	char *arena;
	/* TrainerSpec */
	int model_type;           /* qc_spm_model_type */
	int treat_ws_as_suffix, byte_fallback;
	int64_t unk_id, bos_id, eos_id;
	/* NormalizerSpec */
	char name[64];            /* normalization rule name ("identity"), cut to fit */
	size_t charsmap_len;      /* bytes of precompiled_charsmap */
	int add_dummy_prefix, remove_extra_ws, escape_ws;
} qc_spm;

/* Parse a tokenizer.model held in data[0..len). name is used in messages.
 * QC_EFORMAT for anything that is not a well-formed ModelProto, QC_ENOMEM.
 * On failure *out is NULL. */
int qc_spm_parse(qc_spm **out, const void *data, size_t len, const char *name);

void qc_spm_free(qc_spm *m);                     /* NULL is a no-op */

/* Serialize m (pieces, the TrainerSpec and NormalizerSpec fields above; no
 * charsmap) into a malloc'd buffer: the inverse of qc_spm_parse, for tests
 * and synthetic models. Fields equal to the protobuf default are still
 * written. QC_ENOMEM. */
int qc_spm_write(const qc_spm *m, char **data, size_t *len);

#endif
