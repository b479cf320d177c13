/*
 * qc_ckpt_int.h - internals shared by the checkpoint reader (qc_ckpt.c), the
 * writer (qc_ckpt_write.c), their shared layout rules (qc_ckpt_layout.c) and
 * the copy between them (qc_ckpt_copy.c). Not part of the library's
 * interface.
 */
#ifndef QC_CKPT_INT_H
#define QC_CKPT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "qc_ckpt.h"
#include "qc_hash.h"
#include "qc_st.h"

/* Size of the pieces in which stream data is read, hashed and passed on:
 * large enough that syscalls vanish, small enough to stay in cache between
 * the read and the hash. */
#define QC_CKPT_CHUNK ((size_t)1 << 20)

/* Rank of a member in the canonical stream order (doc/design.md 1.3). */
enum {
	QC_RANK_CONFIG = 0,     /* config.json */
	QC_RANK_SMALL = 1,      /* tokenizer and other small files */
	QC_RANK_SHARD = 2,      /* *.safetensors */
	QC_RANK_INDEX = 3,      /* model.safetensors.index.json */
	QC_RANK_REPORT = 4,     /* *.jsonl */
	QC_RANK_MANIFEST = 5,   /* quant_manifest.json */
};
int qc_ckpt__rank(const char *name);

/* "layer 3", "the embeddings", "the final norm and lm_head" for messages. */
const char *qc_ckpt__group_desc(int group, char buf[48]);

/* The layer-order rule for one shard: every tensor's group must be above
 * *complete (the highest group already complete); then *complete rises to
 * the shard's highest group - 1, or to its "qc.groups_complete" metadata.
 * On a violation returns -1 with *bad the offending tensor index; a bad
 * metadata value returns -2. */
int qc_ckpt__order(int *complete, const qc_st *st, size_t *bad, int *lo, int *hi);
/* Same for a writer's shard, given the tensors' names and the metadata value
 * (QC_GROUP_PRE - 1 when none). */
int qc_ckpt__order_names(int *complete, const qc_tensor *t, size_t n, int groups_complete,
                         size_t *bad);

/* One pass over a safetensors file image arriving in pieces, updating the
 * file's XXH3-128 and every tensor's XXH3-64 from the same bytes while they
 * are in cache. st gives the layout (a header-only reader is enough). */
typedef struct qc_hwalk {
	qc_hasher *file;        /* NULL: no file hash */
	qc_hasher64 *t;         /* NULL: no tensor hashes */
	const qc_st *st;
	size_t ti;              /* current tensor (data order) */
	uint64_t pos;           /* file offset of the next byte */
	uint64_t *out;          /* per-tensor hashes, in data order */
} qc_hwalk;
int qc_hwalk_init(qc_hwalk *w, const qc_st *st, int file, int tensors);
void qc_hwalk_feed(qc_hwalk *w, const void *data, size_t len);
/* Finish: tensor hashes are in w->out, the file hash in *fh (may be NULL). */
void qc_hwalk_finish(qc_hwalk *w, qc_h128 *fh);
void qc_hwalk_release(qc_hwalk *w);

/* A directory shard written while it is filled (qc_ckpt_plan.c; see
 * qc_ckw_plan_shard). plan_new takes decl (declarations and metadata, laid
 * out as the shard will be), creates path exclusively with the header and
 * starts the writer thread (*p is NULL, and 0 returned, when no thread can
 * be started: the shard is then written unplanned). plan_add queues a tensor that matches an
 * unwritten declaration (1) or marks the plan broken (0: the caller writes
 * the shard again at its end); data must stay valid until finish or free.
 * finish waits for the writes and closes the file: *ok 1 when every
 * declared tensor was added and written (then *size and *fh, the file's
 * XXH3-128, are set and plan_hash gives each tensor's XXH3-64), 0 when the
 * plan broke, or a negative code for a write error. free stops the thread
 * (discarding queued writes) and leaves the file to the caller. */
typedef struct qc_ckw_plan qc_ckw_plan;
int qc_ckw__plan_new(qc_ckw_plan **p, const char *path, qc_st_writer *decl);
int qc_ckw__plan_add(qc_ckw_plan *p, const char *name, qc_dtype dt, int ndim,
                     const int64_t *shape, const void *data);
int qc_ckw__plan_finish(qc_ckw_plan *p, int *ok, uint64_t *size, qc_h128 *fh);
int qc_ckw__plan_hash(const qc_ckw_plan *p, const char *name, uint64_t *h);
void qc_ckw__plan_free(qc_ckw_plan *p);

/* Where qc_ckpt__copy_members hands the members of a checkpoint, in stream
 * order: small files whole, shards through a fill function (qc_ckpt_copy
 * points these at a verbatim writer). */
typedef struct qc_ckpt_msink {
	void *ctx;
	int (*add_file)(void *ctx, const char *name, const void *data, size_t len);
	int (*add_member)(void *ctx, const char *name, uint64_t size, qc_ckw_fill_fn fill,
	                  void *fill_ctx);
} qc_ckpt_msink;
int qc_ckpt__copy_members(qc_ckpt *ck, const qc_ckpt_msink *sink);

#endif
