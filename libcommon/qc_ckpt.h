/*
 * qc_ckpt.h - checkpoints: a HuggingFace directory or a tar stream, behind one
 * interface, for reading and for writing (DESIGN 3.1, 3.2).
 *
 * A checkpoint is a set of named tensors (in one or more safetensors shards)
 * plus small files (config.json, tokenizer files, generation_config.json,
 * quant_report.jsonl, quant_manifest.json, ...).
 *
 * Directory form: config.json and either model.safetensors or shards listed in
 * model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor:
 * file}}). Shard file names in the index must be plain names inside the
 * directory (no '/', no "..": qc_safe_filename); every tensor must appear in
 * exactly one shard and the index must agree with the shards' headers.
 *
 * Stream form: a POSIX tar (ustar, with pax 'x' headers for long names and
 * sizes over 8 GiB; GNU 'L' names and base-256 sizes are also read) of the
 * same files, in layer order: config.json and tokenizer files first, then
 * one shard per decoder layer (the first also holds the embeddings, the last
 * the final norm and lm_head), then the index, reports, and the manifest
 * last. Untarred it is a valid directory checkpoint. A zstd-compressed stream
 * is recognized and decompressed on the fly.
 *
 * Tensor groups. Every tensor name belongs to a group, the unit in which
 * streams are consumed: QC_GROUP_PRE (-1) for names outside the decoder layers
 * that come first (model.embed_tokens.*), N for "model.layers.N.*", and
 * QC_GROUP_POST for everything else (model.norm.*, lm_head.*). A stream
 * reader reads forward only as far as a request needs: a group is complete
 * when a later group has been seen, when a shard's metadata says so
 * ("qc.groups_complete": "N", written by qc_ckw_end_shard), or at the end.
 * Shards read ahead of need are held in memory up to a limit, then spilled
 * to a temporary directory. A stream that brings a tensor of a group that
 * was already handed out as complete is out of layer order: QC_EFORMAT,
 * naming the tensor and suggesting to untar it and pass the directory.
 *
 * Lifetimes: tensor views returned by qc_ckpt_get stay valid until
 * qc_ckpt_release(name) or qc_ckpt_close. Releasing every tensor of a stream
 * shard frees that shard's memory, so a tool that releases each layer when
 * done holds about one layer of the checkpoint at a time.
 *
 * Not thread-safe: one thread uses a qc_ckpt at a time.
 */
#ifndef QC_CKPT_H
#define QC_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"
#include "qc_hash.h"
#include "qc_manifest.h"

#define QC_GROUP_PRE  (-1)
#define QC_GROUP_POST (1 << 30)

/* Group of a tensor name (see above). */
int qc_ckpt_group_of(const char *tensor_name);

/* ---------------------------------------------------------------- reader */
typedef struct qc_ckpt qc_ckpt;

typedef struct qc_ckpt_opts {
	uint64_t stream_mem_limit;  /* read-ahead bytes kept in memory before spilling;
	                               0 = 4 GiB */
	const char *tmpdir;         /* where spills go; NULL = $TMPDIR or /tmp */
	int hash_tensors;           /* compute each tensor's XXH3-64 as it is read, for
	                               qc_ckpt_fingerprint and manifest checks */
} qc_ckpt_opts;

/* Open a checkpoint: a directory, a tar file (optionally zstd-compressed), or
 * "-" for a tar stream on stdin. opts may be NULL. For a directory the index
 * and every shard header are validated now; for a stream, the members before
 * the first shard (config.json, tokenizer files) are read now. */
int qc_ckpt_open(qc_ckpt **out, const char *path, const qc_ckpt_opts *opts);
void qc_ckpt_close(qc_ckpt *ck);                /* NULL is a no-op; removes spills */

/* "<stdin>" for "-", else the path as given. */
const char *qc_ckpt_name(const qc_ckpt *ck);
int qc_ckpt_is_stream(const qc_ckpt *ck);

/* A small (non-safetensors, non-index) file by name. Streams read forward to
 * find it (files after the shards, such as reports and the manifest, are
 * reached only by reading through). QC_ENOTFOUND when absent. The data is
 * NUL-terminated (not counted in len) and lives until qc_ckpt_close. */
int qc_ckpt_file(qc_ckpt *ck, const char *name, const void **data, size_t *len);

/* Names of the small files seen so far (all of them, for a directory, or
 * after qc_ckpt_read_all for a stream). */
size_t qc_ckpt_file_count(const qc_ckpt *ck);
const char *qc_ckpt_file_name(const qc_ckpt *ck, size_t i);

/* A tensor by name; QC_ENOTFOUND when the checkpoint has no such tensor. */
int qc_ckpt_get(qc_ckpt *ck, const char *name, const qc_tensor **t);
/* The caller is done with a tensor (see Lifetimes). Unknown names are ignored. */
void qc_ckpt_release(qc_ckpt *ck, const char *name);

/* Names of every tensor in a group, sorted; the array and strings are owned
 * by ck and valid until the next call of this function or qc_ckpt_close. */
int qc_ckpt_group_names(qc_ckpt *ck, int group, const char *const **names, size_t *n);

/* Read a stream to its end (holding or spilling what is not released), so
 * that every tensor and file is known. A no-op for directories. */
int qc_ckpt_read_all(qc_ckpt *ck);
/* Every tensor name, sorted (after qc_ckpt_read_all for streams). */
int qc_ckpt_tensor_names(qc_ckpt *ck, const char *const **names, size_t *n);

/* The manifest, parsed, if the checkpoint has quant_manifest.json (for a
 * stream this reads to the end). *m is NULL and 0 returned when it has none;
 * QC_EFORMAT when it is malformed. Owned by ck. */
int qc_ckpt_manifest(qc_ckpt *ck, const qc_manifest **m);

/* Check every file and tensor against the manifest: sizes, XXH3-128 of files,
 * XXH3-64 of tensors, and that nothing is missing or extra. Returns 0, or
 * QC_EINTEGRITY naming the first mismatch (file and tensor), or QC_ENOTFOUND
 * when there is no manifest. Reads everything (reading a stream through). */
int qc_ckpt_verify(qc_ckpt *ck);

/* Fingerprint (see qc_manifest.h) of the tensors, computed from the data.
 * Reads and hashes everything. out: 33 bytes. */
int qc_ckpt_fingerprint(qc_ckpt *ck, char out[33]);

/* ---------------------------------------------------------------- writer */
typedef struct qc_ckpt_writer qc_ckpt_writer;

typedef struct qc_ckw_opts {
	int n_shards;          /* shards the caller will write: names are
	                          model-0000k-of-0000n.safetensors, or
	                          model.safetensors (and no index) for 1 */
	int force;             /* replace an existing output directory */
	int keep_partial;      /* on abort keep "<out>.partial/" (for --resume) */
	const char *tool;      /* history entry appended to the manifest:  */
	const char *version;   /*   tool name, version, command line        */
	int argc;
	char *const *argv;
	const qc_manifest *inherit;  /* manifest of the input (history, base, token
	                                sets carried), or NULL */
	int no_history;        /* a pure format conversion (qcat): add no entry */
} qc_ckw_opts;

/* Start writing to a directory path or "-" (tar stream on stdout; refused
 * with QC_EINVAL when stdout is a terminal). A directory is built in
 * "<path>.partial/" and renamed into place by qc_ckw_close; an existing
 * non-empty path is QC_EINVAL unless force. */
int qc_ckw_open(qc_ckpt_writer **w, const char *path, const qc_ckw_opts *opts);

/* A small file (copied). Stream members appear in call order, so add
 * config.json and tokenizer files before the first shard. The manifest is
 * written by close; adding QC_MANIFEST_NAME is QC_EINVAL. */
int qc_ckw_add_file(qc_ckpt_writer *w, const char *name, const void *data, size_t len);

/* Add a tensor to the current shard. With own != 0, data is free()d by the
 * writer after the shard is written; otherwise it must stay valid until
 * qc_ckw_end_shard returns. */
int qc_ckw_add_tensor(qc_ckpt_writer *w, const char *name, qc_dtype dt, int ndim,
                      const int64_t *shape, const void *data, int own);

/* Write the current shard. groups_complete: the highest group whose tensors
 * are all written now (recorded in the shard's metadata for stream readers),
 * or QC_GROUP_PRE - 1 to record nothing. */
int qc_ckw_end_shard(qc_ckpt_writer *w, int groups_complete);

/* Record the base model's fingerprint and the token sets used (manifest). */
int qc_ckw_set_base(qc_ckpt_writer *w, const char *fingerprint_hex, const char *source);
int qc_ckw_add_token_set(qc_ckpt_writer *w, const char *role, qc_h128 hash);

/* Write the index (when n_shards > 1) and the manifest, then rename the
 * directory into place or finish the stream. Frees w, also on failure (in
 * which case the partial output is removed as by abort). */
int qc_ckw_close(qc_ckpt_writer *w);
/* Discard everything written (see keep_partial) and free w. NULL is a no-op. */
void qc_ckw_abort(qc_ckpt_writer *w);

/* Shard file name for shard k (1-based) of n: "model-00001-of-00004.safetensors". */
void qc_ckpt_shard_name(char out[64], int k, int n);

#endif
