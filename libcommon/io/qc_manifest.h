/*
 * qc_manifest.h - quant_manifest.json, the provenance and integrity record
 * that every checkpoint written by the toolkit carries (doc/design.md 3.6).
 *
 * Layout (keys sorted, two-space indent, one trailing newline, so that the
 * same content always gives the same bytes):
 *
 * {
 *   "base": {"fingerprint": "<xxh3-128 hex>", "source": "<path as given>"},
 *   "files": {"config.json": {"size": 712, "xxh3_128": "<hex>"}, ...},
 *   "fingerprint": "<xxh3-128 hex of this checkpoint's tensors>",
 *   "format": "qtoolkit-manifest",
 *   "history": [{"argv": ["qsynth", "--preset", "tiny"], "tool": "qsynth",
 *                "version": "0.1.0"}, ...],
 *   "self_xxh3_128": "<xxh3-128 hex of this file, these 32 digits as zeros>",
 *   "tensors": {"model.norm.weight": {"dtype": "BF16", "shape": [64],
 *               "xxh3_64": "<hex>"}, ...},
 *   "token_sets": [{"role": "calibration", "xxh3_128": "<hex>"}],
 *   "version": 1
 * }
 *
 * "files" lists every file of the checkpoint except the manifest itself,
 * which "self_xxh3_128" covers: qc_manifest_to_json writes it, and
 * qc_manifest_parse checks it against the bytes it is given (the key is
 * found by the layout: the one line starting `  "self_xxh3_128": "`), with
 * QC_EINTEGRITY on a mismatch. A manifest without the key is accepted.
 * The fingerprint identifies a checkpoint's content independently of its
 * sharding: XXH3-128 over the tensors sorted by name, each contributing
 * "name\0dtype\0d0,d1,...\0<xxh3_64 hex>\n". "base" is the fingerprint of the
 * unquantized model this one descends from (for qsynth and other unmodified
 * checkpoints, its own fingerprint). History entries are appended by each
 * tool that changed the content, oldest first.
 *
 * "base" and "fingerprint" are written only when set; the other keys always
 * (empty when there is nothing to list). "base"."source" is optional. Hashes
 * are lower-case hex in xxhsum's canonical order (qc_hash.h), so
 * `xxhsum -H2 FILE` reproduces a file's "xxh3_128".
 *
 * Ownership: a qc_manifest owns copies of every string given to it; strings
 * it returns stay valid until the entry is replaced or the manifest freed.
 * Not thread-safe: one thread uses a manifest at a time.
 */
#ifndef QC_MANIFEST_H
#define QC_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"
#include "qc_hash.h"

#define QC_MANIFEST_NAME "quant_manifest.json"

typedef struct qc_manifest qc_manifest;

qc_manifest *qc_manifest_new(void);             /* NULL on out of memory */
void qc_manifest_free(qc_manifest *m);          /* NULL is a no-op */

/* Parse manifest JSON into a new manifest (*out NULL on failure). Strict:
 * "format" must be "qtoolkit-manifest", "version" 1, "files" and "tensors"
 * present; every key, type and hash is checked and unknown keys are
 * refused (a new key means a new version). Returns 0; QC_EFORMAT with a
 * message naming the key ("malformed manifest: 'size' in file
 * 'config.json' must be a non-negative integer"); QC_EUNSUPPORTED for a
 * newer version; QC_EINTEGRITY when the stored "fingerprint" is not the one
 * its "tensors" give. */
int qc_manifest_parse(qc_manifest **out, const void *json, size_t len);
/* Serialize deterministically (the layout above, written by qc_json_dump)
 * into a malloc'd, NUL-terminated string; len may be NULL. The same content
 * always gives the same bytes, whatever order it was added in. */
int qc_manifest_to_json(const qc_manifest *m, char **json, size_t *len);

/* Replace dst's history, base and token sets by copies of src's (files and
 * tensors are not touched): what a tool carries from its input's manifest
 * to its output's. dst is unchanged on failure. */
int qc_manifest_inherit(qc_manifest *dst, const qc_manifest *src);

/* Append a history entry (argv copied; NULL elements become ""). */
int qc_manifest_add_history(qc_manifest *m, const char *tool, const char *version,
                            int argc, char *const *argv);
/* Set the base: fingerprint_hex must be 32 lower-case hex digits (else
 * QC_EINVAL); source (the path or name as given) may be NULL. */
int qc_manifest_set_base(qc_manifest *m, const char *fingerprint_hex, const char *source);
/* Append a token set ("calibration", ...) with its file's XXH3-128. */
int qc_manifest_add_token_set(qc_manifest *m, const char *role, qc_h128 hash);

/* Record (or replace) a file's and a tensor's entry. File names must be
 * plain names (qc_safe_filename: no '/', no "..") other than
 * QC_MANIFEST_NAME; tensor names non-empty, ndim 0..QC_MAX_DIMS, dimensions
 * >= 0, dt a valid dtype: else QC_EINVAL. parse applies the same rules
 * (QC_EFORMAT), so a manifest cannot point a verifier outside its
 * checkpoint. The stored fingerprint is not updated (see below). */
int qc_manifest_set_file(qc_manifest *m, const char *name, uint64_t size, qc_h128 hash);
int qc_manifest_set_tensor(qc_manifest *m, const char *name, qc_dtype dt, int ndim,
                           const int64_t *shape, uint64_t hash);

/* Compute the fingerprint over the recorded tensors into out (33 bytes). */
int qc_manifest_fingerprint(const qc_manifest *m, char out[33]);
/* The stored "fingerprint" (NULL if absent); update_fingerprint stores the
 * computed one (writers call it once all tensors are recorded). */
const char *qc_manifest_get_fingerprint(const qc_manifest *m);
int qc_manifest_update_fingerprint(qc_manifest *m);

/* Lookups for verification. Return 0, or QC_ENOTFOUND (message set).
 * Output pointers may be NULL. Name getters return NULL past the end. */
int qc_manifest_file(const qc_manifest *m, const char *name, uint64_t *size, qc_h128 *hash);
int qc_manifest_tensor(const qc_manifest *m, const char *name, qc_dtype *dt, int *ndim,
                       int64_t shape[QC_MAX_DIMS], uint64_t *hash);
size_t qc_manifest_file_count(const qc_manifest *m);
const char *qc_manifest_file_name(const qc_manifest *m, size_t i);   /* sorted by name */
size_t qc_manifest_tensor_count(const qc_manifest *m);
const char *qc_manifest_tensor_name(const qc_manifest *m, size_t i); /* sorted by name */
const char *qc_manifest_base(const qc_manifest *m);                  /* base fingerprint or NULL */
const char *qc_manifest_base_source(const qc_manifest *m);           /* or NULL */
size_t qc_manifest_history_count(const qc_manifest *m);
/* tool name and version of history entry i (oldest first); NULL past the end */
const char *qc_manifest_history_tool(const qc_manifest *m, size_t i);
const char *qc_manifest_history_version(const qc_manifest *m, size_t i);
/* its command line; QC_ENOTFOUND past the end */
int qc_manifest_history_argv(const qc_manifest *m, size_t i, int *argc, char *const **argv);
/* token sets in the order added; QC_ENOTFOUND past the end */
size_t qc_manifest_token_set_count(const qc_manifest *m);
int qc_manifest_token_set(const qc_manifest *m, size_t i, const char **role, qc_h128 *hash);

#endif
