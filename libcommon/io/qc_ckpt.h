/*
 * qc_ckpt.h - checkpoints: a HuggingFace directory or a tar stream, behind one
 * interface, for reading and for writing (doc/design.md 1.2-1.4, 3.1, 3.2).
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
 * A shard a request needs (it holds the tensor asked for, or a tensor of a
 * group up to the one asked for) is read into memory unless it alone exceeds
 * the limit; shards read ahead of need are held in memory while the bytes
 * held stay under the limit, then spilled to a temporary directory and
 * mapped from there. Small files that come after the shards are reached the
 * same way. A stream that brings a tensor of a group that was already
 * complete is out of layer order: QC_EFORMAT, naming the tensor and
 * suggesting to untar it and pass the directory. This rule is checked on
 * every shard, whatever the reader asked for, so a stream is accepted or
 * refused the same way by every tool.
 *
 * Lifetimes: tensor views returned by qc_ckpt_get stay valid until
 * qc_ckpt_release(name) or qc_ckpt_close. Releasing every tensor of a stream
 * shard frees that shard's memory, so a tool that releases each layer when
 * done holds about one layer of the checkpoint at a time. A directory's
 * shards stay mapped until close (their pages belong to the page cache);
 * releasing a tensor there drops its pages from the process (madvise), so a
 * layer-by-layer reader's resident memory stays near one layer, and a later
 * qc_ckpt_get of it reads them back. Everything a qc_ckpt returns is owned
 * by it.
 *
 * Not thread-safe: one thread uses a qc_ckpt at a time (the hash pass over a
 * directory runs a few threads of its own, joined before it returns).
 */
#ifndef QC_CKPT_H
#define QC_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"
#include "qc_hash.h"
#include "qc_io.h"
#include "qc_manifest.h"

#define QC_GROUP_PRE  (-1)
#define QC_GROUP_POST (1 << 30)

#define QC_CKPT_INDEX_NAME "model.safetensors.index.json"
/* Shard metadata key written by qc_ckw_end_shard (decimal group number). */
#define QC_CKPT_META_GROUPS "qc.groups_complete"

/* Group of a tensor name (see above): "model.layers.N." followed by more
 * gives N (N < QC_GROUP_POST), "model.embed_tokens." gives QC_GROUP_PRE. */
int qc_ckpt_group_of(const char *tensor_name);

/* ---------------------------------------------------------------- reader */
typedef struct qc_ckpt qc_ckpt;

typedef struct qc_ckpt_opts {
	uint64_t stream_mem_limit;  /* read-ahead bytes kept in memory before spilling;
	                               0 = 4 GiB */
	const char *tmpdir;         /* where spills go; NULL = $TMPDIR or /tmp */
	int hash_tensors;           /* streams: hash every member (XXH3-128) and tensor
	                               (XXH3-64) as it passes, so that qc_ckpt_hash,
	                               qc_ckpt_verify and qc_ckpt_fingerprint still work
	                               after tensors were released. Directories are
	                               hashed from their files whenever asked. */
} qc_ckpt_opts;

/* Open a checkpoint: a directory, a tar file (optionally zstd-compressed), or
 * "-" for a tar stream on stdin. opts may be NULL. For a directory the index
 * and every shard header are validated now; for a stream, the members before
 * the first shard (config.json, tokenizer files) are read now.
 *
 * Directory members are the regular files at its top level whose names do
 * not start with '.' (symbolic links are followed, as in a HuggingFace cache
 * snapshot; subdirectories such as original/ are ignored). It must have
 * config.json, and either model.safetensors or an index; every .safetensors
 * file must be a shard the index names (QC_EFORMAT otherwise). A stream is
 * held to the same rules, checked when its end is reached: config.json, the
 * index when there are several shards, index and shards in agreement. Any
 * malformed input is QC_EFORMAT with a message naming the file (and the
 * tensor); a missing path is QC_EIO. */
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
 * after qc_ckpt_read_all for a stream), sorted, without the shards, the index
 * and the manifest (which writers make themselves): what a tool carries from
 * its input to its output. */
size_t qc_ckpt_file_count(const qc_ckpt *ck);
const char *qc_ckpt_file_name(const qc_ckpt *ck, size_t i);

/* A tensor by name; QC_ENOTFOUND when the checkpoint has no such tensor;
 * QC_EINVAL for a stream tensor already released or consumed by a hash pass.
 * For a directory the data is a read-only mapping of the shard. */
int qc_ckpt_get(qc_ckpt *ck, const char *name, const qc_tensor **t);
/* The caller is done with a tensor (see Lifetimes). Unknown names are ignored. */
void qc_ckpt_release(qc_ckpt *ck, const char *name);
/* Keep a tensor's view valid whoever releases it: a qc_ckpt_release while
 * it is held takes effect at the last qc_ckpt_unhold. A writer that reads
 * a view on its own schedule (qc_qout's passed tensors) holds it, so that a
 * model loading and releasing the same tensor cannot free it under the
 * writer. QC_ENOTFOUND for an unknown name; unhold of a name not held is a
 * no-op. */
int qc_ckpt_hold(qc_ckpt *ck, const char *name);
void qc_ckpt_unhold(qc_ckpt *ck, const char *name);

/* Names of every tensor in a group, sorted; the array and strings are owned
 * by ck and valid until the next call of this function or qc_ckpt_close.
 * Streams read forward until the group is complete (see Tensor groups). */
int qc_ckpt_group_names(qc_ckpt *ck, int group, const char *const **names, size_t *n);

/* Read a stream to its end (holding or spilling what is not released), so
 * that every tensor and file is known. A no-op for directories. */
int qc_ckpt_read_all(qc_ckpt *ck);
/* Every tensor name, sorted (after qc_ckpt_read_all for streams). */
int qc_ckpt_tensor_names(qc_ckpt *ck, const char *const **names, size_t *n);

/* The manifest, parsed, if the checkpoint has quant_manifest.json (for a
 * stream this reads to the end, holding or spilling what was not released:
 * call it after the tensors are consumed). *m is NULL and 0 returned when it
 * has none; QC_EFORMAT when it is malformed. Owned by ck. */
int qc_ckpt_manifest(qc_ckpt *ck, const qc_manifest **m);

/* Hash the checkpoint as a manifest records it: every file but the manifest
 * (size, XXH3-128) and every tensor (dtype, shape, XXH3-64) go into m (new
 * entries set, existing ones replaced). A stream is read through to its
 * end, hashing what passes without keeping it: tensors not read before are
 * no longer available afterwards. Tensors already released must have been
 * hashed as they passed (hash_tensors), else QC_EINVAL. */
int qc_ckpt_hash(qc_ckpt *ck, qc_manifest *m);

/* Check every file and tensor against the manifest: sizes, XXH3-128 of files,
 * XXH3-64, dtype and shape of tensors, and that nothing is missing or extra.
 * Returns 0, or QC_EINTEGRITY naming the first mismatch in stream order (the
 * file and, inside a shard, the tensor), or QC_ENOTFOUND when there is no
 * manifest. Hashes everything as qc_ckpt_hash does. */
int qc_ckpt_verify(qc_ckpt *ck);

/* Fingerprint (see qc_manifest.h) of the tensors, computed from the data.
 * Reads and hashes everything as qc_ckpt_hash does. out: 33 bytes. */
int qc_ckpt_fingerprint(qc_ckpt *ck, char out[33]);

/* ---------------------------------------------------------------- members
 * Whole files, for transports and listings (qcat). Members come in stream
 * order: for a directory the canonical order writers use (config.json; the
 * other small files by name; shards by the lowest then highest group they
 * hold, then name; the index; reports (*.jsonl) by name; the manifest), for
 * a stream the order of the stream. Both functions must be called on a
 * freshly opened checkpoint (QC_EINVAL once a tensor was read) and consume a
 * stream; they validate everything that qc_ckpt_read_all would. */

/* Called once per member (t NULL) and, after a shard's member call, once per
 * tensor in data order (t->data NULL). Return 0 to go on, or a negative code
 * to stop (returned by qc_ckpt_list). */
typedef int (*qc_ckpt_list_fn)(void *ctx, const char *member, uint64_t size, const qc_tensor *t);
int qc_ckpt_list(qc_ckpt *ck, qc_ckpt_list_fn fn, void *ctx);

/* Copy every member byte for byte to w, which must be a verbatim writer
 * (qc_ckw_opts.verbatim). Shards pass through in pieces, never whole in
 * memory. A directory that cannot be streamed in layer order (shards that
 * interleave layers) is QC_EFORMAT before anything is written. */
typedef struct qc_ckpt_writer qc_ckpt_writer;
int qc_ckpt_copy(qc_ckpt *ck, qc_ckpt_writer *w);

/* ---------------------------------------------------------------- writer
 *
 * Stream members are written in the canonical order above whatever the call
 * order: small files added before the first shard are held and written
 * (config.json first, then by name) when the first shard ends; reports
 * (*.jsonl), and other small files added after the first shard, are written
 * after the index, by name; the manifest comes last. So a stream from the
 * writer equals `qcat -o -` of the directory the writer makes. Every file
 * written is hashed on the way out (XXH3-128) and every tensor (XXH3-64) for
 * the manifest.
 */

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
	int verbatim;          /* copy mode (qc_ckpt_copy): the caller supplies every
	                          member, shards, index and manifest included, in
	                          stream order through qc_ckw_add_file and
	                          qc_ckw_add_member; close adds nothing; n_shards,
	                          history and manifest options are ignored */
} qc_ckw_opts;

/* Start writing to a directory path or "-" (tar stream on stdout; refused
 * with QC_EINVAL when stdout is a terminal). A directory is built in
 * "<path>.partial/" and renamed into place by qc_ckw_close; an existing
 * non-empty path is QC_EINVAL unless force, which replaces it only at close
 * (atomically where the file system can exchange names). A stale
 * "<path>.partial/" is removed first, unless keep_partial, which reuses it. */
int qc_ckw_open(qc_ckpt_writer **w, const char *path, const qc_ckw_opts *opts);

/* 1 when w writes a tar stream, 0 for a directory. */
int qc_ckw_is_stream(const qc_ckpt_writer *w);

/* A small file (copied). Add config.json and tokenizer files before the
 * first shard (see the member order above). The names must be plain file
 * names (qc_safe_filename), each used once. The writer makes the shards, the
 * index and the manifest: adding a .safetensors file, the index or
 * QC_MANIFEST_NAME is QC_EINVAL (except in verbatim mode). */
int qc_ckw_add_file(qc_ckpt_writer *w, const char *name, const void *data, size_t len);

/* Verbatim mode only: a member of size bytes written now by fill(ctx, sink),
 * which must write exactly size bytes (QC_EINTERNAL otherwise). */
typedef int (*qc_ckw_fill_fn)(void *ctx, qc_sink *sink);
int qc_ckw_add_member(qc_ckpt_writer *w, const char *name, uint64_t size,
                      qc_ckw_fill_fn fill, void *ctx);

/* Add a tensor to the current shard (see qc_st_writer_add for the checks).
 * With own != 0, data is free()d by the writer after the shard is written
 * (also when the call fails); otherwise it must stay valid until
 * qc_ckw_end_shard returns. */
int qc_ckw_add_tensor(qc_ckpt_writer *w, const char *name, qc_dtype dt, int ndim,
                      const int64_t *shape, const void *data, int own);

/* Optional, before the first qc_ckw_add_tensor of a shard: declare its
 * tensors (name, dtype, ndim, shape of each; data ignored) and the
 * groups_complete its qc_ckw_end_shard will give. A directory writer then
 * lays the shard out and creates its file at once, and each declared
 * tensor is written at its offset by a background thread as soon as it is
 * added, while the caller goes on (the data contract of qc_ckw_add_tensor
 * is unchanged: valid until qc_ckw_end_shard returns). The plan only ever
 * saves time: if the tensors added differ from it (one not declared, one
 * missing, another dtype or shape, other metadata) end_shard writes the
 * shard again from what was added, the same file as without a plan. A
 * no-op for a stream, whose members go out whole and in order. QC_EINVAL
 * once the shard has tensors, or on a bad declaration. */
int qc_ckw_plan_shard(qc_ckpt_writer *w, const qc_tensor *decl, size_t n, int groups_complete);
/* Planned shards so far that were written while filled (held) and that
 * were written again at their end (broken: the adds differed). */
void qc_ckw_plan_stats(const qc_ckpt_writer *w, int *held, int *broken);

/* Write the current shard (metadata "format": "pt" and, when recorded,
 * "qc.groups_complete"). groups_complete: the highest group whose tensors
 * are all written now (recorded in the shard's metadata for stream readers),
 * or QC_GROUP_PRE - 1 to record nothing. Shards must come in layer order: a
 * tensor of a group that an earlier shard completed (by its metadata, or by
 * holding a later group) is QC_EINVAL, as is a shard beyond n_shards. */
int qc_ckw_end_shard(qc_ckpt_writer *w, int groups_complete);

/* Size and XXH3-128 of a member already written (a shard after its
 * qc_ckw_end_shard), as the manifest will record them: what a caller
 * would otherwise read the file back for. QC_ENOTFOUND when not written
 * (or in verbatim mode, which hashes nothing). */
int qc_ckw_member_hash(const qc_ckpt_writer *w, const char *name, uint64_t *size, qc_h128 *h);

/* Carry the provenance of an input whose manifest became known only after
 * open (a stream's manifest comes last): its history, base and token sets
 * are put before what this writer has recorded so far (its own history
 * entry, token sets, and a base it set, which wins). Same effect as
 * opts->inherit at open. */
int qc_ckw_inherit(qc_ckpt_writer *w, const qc_manifest *m);

/* Record the base model's fingerprint and the token sets used (manifest). */
int qc_ckw_set_base(qc_ckpt_writer *w, const char *fingerprint_hex, const char *source);
int qc_ckw_add_token_set(qc_ckpt_writer *w, const char *role, qc_h128 hash);

/* Write the index (when n_shards > 1; HF layout, {"metadata": {"total_size"},
 * "weight_map"}, sorted, indent 2) and the manifest (inherited history, base
 * and token sets; this tool's history entry unless no_history; the base is
 * this checkpoint's own fingerprint when none was set or inherited), then
 * rename the directory into place or end the stream. Fewer shards than
 * n_shards, or tensors added after the last qc_ckw_end_shard, are QC_EINVAL.
 * Frees w, also on failure (in which case the partial output is removed as
 * by abort). */
int qc_ckw_close(qc_ckpt_writer *w);
/* Discard everything written (see keep_partial) and free w. NULL is a no-op. */
void qc_ckw_abort(qc_ckpt_writer *w);

/* Shard file name for shard k (1-based) of n: "model-00001-of-00004.safetensors",
 * or "model.safetensors" when n is 1. */
void qc_ckpt_shard_name(char out[64], int k, int n);

#endif
