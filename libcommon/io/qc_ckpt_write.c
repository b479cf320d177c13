/*
 * qc_ckpt_write.c - checkpoint writer: a directory built in "<out>.partial/"
 * and renamed into place, or a tar stream on stdout (see qc_ckpt.h).
 *
 * Every member goes through put_member(), which opens the destination (a
 * file in the partial directory, or a tar header on the stream), lets a
 * fill function write the bytes through a hashing tee, checks the byte count
 * against the size announced up front, and records size and XXH3-128 for the
 * manifest. Shards are laid out before they are written (qc_st_writer_layout)
 * so their size is known for the tar header; their data is never copied.
 */
#include "qc_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <jansson.h>

#include "qc_ckpt_int.h"
#include "qc_cleanup.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_json.h"
#include "qc_st.h"
#include "qc_tar.h"
#include "qc_vec.h"

struct pfile {
	char *name;
	unsigned char *data;
	size_t len;
};

struct qc_ckpt_writer {
	char *path;             /* final directory (no trailing '/'), or "<stdout>" */
	char *partial;          /* "<path>.partial" */
	int stream;
	int n_shards, force, keep_partial, verbatim;
	qc_sink out;            /* the stream (fd 1) */
	qc_st_writer *cur;      /* the shard being filled */
	qc_ckw_plan *plan;      /* its file being written meanwhile (qc_ckw_plan_shard) */
	int plan_gc;            /* the groups_complete it was planned with */
	int plans_held, plans_broken;  /* planned shards written meanwhile, or again at their end */
	int shards_done;
	int complete;           /* layer-order rule, as readers apply it */
	struct pfile *pre, *post;   /* small files waiting for their place */
	size_t npre, cappre, npost, cappost;
	char **names;           /* every member name taken */
	size_t nnames, capnames;
	json_t *wmap;           /* tensor -> shard file, for the index */
	uint64_t total_size;    /* tensor bytes, for the index metadata */
	qc_manifest *man;
	int broken;             /* a write failed: only abort remains */
};

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

static int name_taken(const qc_ckpt_writer *w, const char *name)
{
	for (size_t i = 0; i < w->nnames; i++)
		if (strcmp(w->names[i], name) == 0)
			return 1;
	return 0;
}

static int take_name(qc_ckpt_writer *w, const char *name)
{
	if (name_taken(w, name))
		return qc_seterr(QC_EINVAL, "cannot add '%s' to '%s': a member of that name exists",
		                 name, w->path);
	QC_TRY(qc_grow((void **)&w->names, &w->capnames, w->nnames + 1, sizeof *w->names));
	if (!(w->names[w->nnames] = strdup(name)))
		return nomem();
	w->nnames++;
	return 0;
}

// ---------------------------------------------------------------- members

struct tee {
	qc_sink s;
	qc_sink *down;
	qc_hasher *h;
};

static int tee_write(qc_sink *s, const void *data, size_t len)
{
	struct tee *t = s->ctx;
	if (t->h)
		qc_hasher_update(t->h, data, len);
	return qc_sink_write(t->down, data, len);
}

/* Write one member of size bytes produced by fill; record it in the
 * manifest when record is set. Any failure breaks the writer. */
static int put_member(qc_ckpt_writer *w, const char *name, uint64_t size, qc_ckw_fill_fn fill,
                      void *ctx, int record)
{
	int rc = 0, fd = -1;
	char *path = NULL;
	qc_sink fsink;
	struct tee t = { .h = NULL };
	if (record && !(t.h = qc_hasher_new()))
		return nomem();
	if (w->stream) {
		if ((rc = qc_tar_write_header(&w->out, name, size)) != 0)
			goto out;
		t.down = &w->out;
	} else {
		path = qc_path_join(w->partial, name);
		if (!path) {
			rc = nomem();
			goto out;
		}
		/* whatever is there (an earlier run's file kept for --resume, or a
		 * symbolic link planted in the partial directory) is replaced,
		 * never written through: unlink, then create exclusively */
		if (unlink(path) != 0 && errno != ENOENT) {
			rc = qc_seterr(QC_EIO, "cannot replace '%s':", path);
			goto out;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0) {
			rc = qc_seterr(QC_EIO, "cannot create '%s':", path);
			goto out;
		}
		qc_sink_fd(&fsink, fd, path);
		t.down = &fsink;
	}
	t.s.write = tee_write;
	t.s.ctx = &t;
	t.s.name = name;
	t.s.written = 0;
	if ((rc = fill(ctx, &t.s)) != 0)
		goto out;
	if (t.s.written != size) {
		rc = qc_seterr(QC_EINTERNAL, "member '%s': %llu bytes written, %llu announced", name,
		               (unsigned long long)t.s.written, (unsigned long long)size);
		goto out;
	}
	if (w->stream)
		rc = qc_tar_write_pad(&w->out, size);
	if (rc == 0 && record)
		rc = qc_manifest_set_file(w->man, name, size, qc_hasher_digest128(t.h));
out:
	if (fd >= 0 && close(fd) != 0 && rc == 0)
		rc = qc_seterr(QC_EIO, "write error on '%s':", path);
	if (rc)
		w->broken = 1;
	free(path);
	qc_hasher_free(t.h);
	return rc;
}

struct mem_fill {
	const void *data;
	size_t len;
};

static int mem_fill(void *ctx, qc_sink *s)
{
	struct mem_fill *f = ctx;
	return qc_sink_write(s, f->data, f->len);
}

static int st_fill(void *ctx, qc_sink *s)
{
	return qc_st_writer_emit(ctx, s);
}

static int put_file(qc_ckpt_writer *w, const struct pfile *f, int record)
{
	struct mem_fill mf = { f->data, f->len };
	return put_member(w, f->name, f->len, mem_fill, &mf, record);
}

static int cmp_pfile(const void *a, const void *b)
{
	const struct pfile *x = a, *y = b;
	int rx = qc_ckpt__rank(x->name), ry = qc_ckpt__rank(y->name);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Write held files in canonical order and forget them. */
static int flush_files(qc_ckpt_writer *w, struct pfile *f, size_t *n)
{
	if (*n == 0)
		return 0;
	qsort(f, *n, sizeof *f, cmp_pfile);
	int rc = 0;
	for (size_t i = 0; i < *n; i++) {
		if (rc == 0)
			rc = put_file(w, &f[i], 1);
		free(f[i].name);
		free(f[i].data);
	}
	*n = 0;
	return rc;
}

// ---------------------------------------------------------------- open

static void writer_free(qc_ckpt_writer *w)
{
	for (size_t i = 0; i < w->npre; i++)
		free(w->pre[i].name), free(w->pre[i].data);
	for (size_t i = 0; i < w->npost; i++)
		free(w->post[i].name), free(w->post[i].data);
	for (size_t i = 0; i < w->nnames; i++)
		free(w->names[i]);
	free(w->pre);
	free(w->post);
	free(w->names);
	qc_ckw__plan_free(w->plan);
	qc_st_writer_free(w->cur);
	json_decref(w->wmap);
	qc_manifest_free(w->man);
	free(w->partial);
	free(w->path);
	free(w);
}

/* 1 if path is a directory with no entries. */
static int empty_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

int qc_ckw_open(qc_ckpt_writer **out, const char *path, const qc_ckw_opts *opts)
{
	*out = NULL;
	static const qc_ckw_opts none;
	if (!opts)
		opts = &none;
	qc_ckpt_writer *w = calloc(1, sizeof *w);
	if (!w)
		return nomem();
	int rc = 0;
	w->n_shards = opts->n_shards;
	w->force = opts->force;
	w->keep_partial = opts->keep_partial;
	w->verbatim = opts->verbatim;
	w->complete = QC_GROUP_PRE - 1;
	w->stream = strcmp(path, "-") == 0;
	if (!w->verbatim && w->n_shards < 1) {
		rc = qc_seterr(QC_EINVAL, "cannot write '%s': %d shards", path, w->n_shards);
		goto fail;
	}
	if (w->stream) {
		w->path = strdup("<stdout>");
		if (!w->path) {
			rc = nomem();
			goto fail;
		}
		if (isatty(1)) {
			rc = qc_seterr(QC_EINVAL, "refusing to write a checkpoint stream to a terminal");
			goto fail;
		}
		qc_sink_fd(&w->out, 1, w->path);
		/* larger pipe buffer: fewer context switches per GB (see qc_source_open) */
		struct stat st;
		if (fstat(1, &st) == 0 && S_ISFIFO(st.st_mode))
			(void)fcntl(1, F_SETPIPE_SZ, 1 << 20);
	} else {
		size_t n = strlen(path);
		while (n > 1 && path[n - 1] == '/')
			n--;
		w->path = strndup(path, n);
		w->partial = malloc(n + sizeof ".partial");
		if (!w->path || !w->partial) {
			rc = nomem();
			goto fail;
		}
		snprintf(w->partial, n + sizeof ".partial", "%s.partial", w->path);
		if (n == 0 || strcmp(w->path, "/") == 0) {
			rc = qc_seterr(QC_EINVAL, "cannot write a checkpoint to '%s'", path);
			goto fail;
		}
		struct stat st;
		if (lstat(w->path, &st) == 0 && !w->force) {
			if (!S_ISDIR(st.st_mode)) {
				rc = qc_seterr(QC_EINVAL, "cannot write '%s': it exists and is not a directory",
				               w->path);
				goto fail;
			}
			if (!empty_dir(w->path)) {
				rc = qc_seterr(QC_EINVAL, "cannot write '%s': the directory exists and is not empty",
				               w->path);
				goto fail;
			}
		}
		if (!w->keep_partial && (rc = qc_rmtree(w->partial)) != 0)
			goto fail;
		/* a kept partial directory must be one: a symbolic link there would
		 * send every file elsewhere and become OUT itself at the rename */
		if (w->keep_partial && lstat(w->partial, &st) == 0 && !S_ISDIR(st.st_mode)) {
			rc = qc_seterr(QC_EINVAL, "cannot resume in '%s': it is not a directory (a symbolic "
			               "link or a file); remove it", w->partial);
			goto fail;
		}
		/* a signal removes it too (qc_cleanup.h), unless it is kept for
		 * --resume: recorded before it exists, so that no instant has it
		 * on disk and unknown to the signal handler */
		if (!w->keep_partial)
			qc_cleanup_add(w->partial);
		if ((rc = qc_mkdirs(w->partial, 0755)) != 0) {
			if (!w->keep_partial)
				qc_cleanup_remove(w->partial);
			goto fail;
		}
	}
	if (!w->verbatim) {
		w->wmap = json_object();
		w->man = qc_manifest_new();
		if (!w->wmap || !w->man) {
			rc = nomem();
			goto fail;
		}
		if (opts->inherit && (rc = qc_manifest_inherit(w->man, opts->inherit)) != 0)
			goto fail;
		if (!opts->no_history && opts->tool &&
		    (rc = qc_manifest_add_history(w->man, opts->tool, opts->version ? opts->version : "",
		                                  opts->argc, opts->argv)) != 0)
			goto fail;
	}
	*out = w;
	return 0;
fail:
	if (w->partial && !w->keep_partial && qc_is_dir(w->partial))
		qc_rmtree(w->partial);
	writer_free(w);
	return rc;
}

// ---------------------------------------------------------------- adding

int qc_ckw_is_stream(const qc_ckpt_writer *w)
{
	return w->stream;
}

void qc_ckw_plan_stats(const qc_ckpt_writer *w, int *held, int *broken)
{
	*held = w->plans_held;
	*broken = w->plans_broken;
}

static int check_usable(const qc_ckpt_writer *w)
{
	if (w->broken)
		return qc_seterr(QC_EINVAL, "cannot go on writing '%s' after an earlier failure", w->path);
	return 0;
}

int qc_ckw_add_file(qc_ckpt_writer *w, const char *name, const void *data, size_t len)
{
	QC_TRY(check_usable(w));
	if (!qc_safe_filename(name))
		return qc_seterr(QC_EINVAL, "cannot add '%s' to '%s': not a plain file name", name, w->path);
	int rank = qc_ckpt__rank(name);
	if (!w->verbatim && (rank == QC_RANK_SHARD || rank == QC_RANK_INDEX || rank == QC_RANK_MANIFEST))
		return qc_seterr(QC_EINVAL, "cannot add '%s' to '%s' as a file: the writer makes the "
		                 "shards, the index and the manifest", name, w->path);
	QC_TRY(take_name(w, name));
	struct pfile f = { (char *)name, (unsigned char *)data, len };
	if (w->verbatim)
		return put_file(w, &f, 0);
	/* held until its place in the stream (see the member order) */
	int late = rank == QC_RANK_REPORT || w->shards_done > 0;
	struct pfile **arr = late ? &w->post : &w->pre;
	size_t *n = late ? &w->npost : &w->npre, *cap = late ? &w->cappost : &w->cappre;
	QC_TRY(qc_grow((void **)arr, cap, *n + 1, sizeof **arr));
	f.name = strdup(name);
	f.data = malloc(len ? len : 1);
	if (!f.name || !f.data) {
		free(f.name);
		free(f.data);
		return nomem();
	}
	memcpy(f.data, data, len);
	(*arr)[(*n)++] = f;
	return 0;
}

int qc_ckw_add_member(qc_ckpt_writer *w, const char *name, uint64_t size, qc_ckw_fill_fn fill,
                      void *ctx)
{
	QC_TRY(check_usable(w));
	if (!w->verbatim)
		return qc_seterr(QC_EINVAL, "cannot add member '%s': the writer is not in verbatim mode", name);
	if (!qc_safe_filename(name))
		return qc_seterr(QC_EINVAL, "cannot add '%s' to '%s': not a plain file name", name, w->path);
	QC_TRY(take_name(w, name));
	return put_member(w, name, size, fill, ctx, 0);
}

int qc_ckw_add_tensor(qc_ckpt_writer *w, const char *name, qc_dtype dt, int ndim,
                      const int64_t *shape, const void *data, int own)
{
	int rc = check_usable(w);
	if (rc == 0 && w->verbatim)
		rc = qc_seterr(QC_EINVAL, "cannot add tensor '%s': the writer is in verbatim mode", name);
	if (rc == 0 && !w->cur && !(w->cur = qc_st_writer_new()))
		rc = nomem();
	if (rc) {
		if (own)
			free((void *)data);
		return rc;
	}
	QC_TRY(qc_st_writer_add(w->cur, name, dt, ndim, shape, data, own));
	if (w->plan)
		(void)qc_ckw__plan_add(w->plan, name, dt, ndim, shape, data);
	return 0;
}

/* The metadata of every shard: transformers requires "format": "pt";
 * stream readers use the other. */
static int shard_meta(qc_st_writer *st, int groups_complete)
{
	char gc[24];
	QC_TRY(qc_st_writer_meta(st, "format", "pt"));
	if (groups_complete >= QC_GROUP_PRE) {
		snprintf(gc, sizeof gc, "%d", groups_complete);
		QC_TRY(qc_st_writer_meta(st, QC_CKPT_META_GROUPS, gc));
	}
	return 0;
}

/* Shard name and checks for the next shard. */
static int next_shard(const qc_ckpt_writer *w, char sname[64], int groups_complete)
{
	qc_ckpt_shard_name(sname, w->shards_done + 1, w->n_shards);
	if (w->shards_done >= w->n_shards)
		return qc_seterr(QC_EINVAL, "cannot write shard %d of '%s': it was opened for %d",
		                 w->shards_done + 1, w->path, w->n_shards);
	if (groups_complete < QC_GROUP_PRE - 1 || groups_complete > QC_GROUP_POST)
		return qc_seterr(QC_EINVAL, "cannot write '%s': groups_complete %d is out of range", sname,
		                 groups_complete);
	return 0;
}

int qc_ckw_plan_shard(qc_ckpt_writer *w, const qc_tensor *decl, size_t n, int groups_complete)
{
	QC_TRY(check_usable(w));
	if (w->verbatim)
		return qc_seterr(QC_EINVAL, "cannot plan a shard: the writer is in verbatim mode");
	if (w->plan || (w->cur && qc_st_writer_count(w->cur) > 0))
		return qc_seterr(QC_EINVAL, "cannot plan shard %d of '%s': it has begun",
		                 w->shards_done + 1, w->path);
	char sname[64];
	QC_TRY(next_shard(w, sname, groups_complete));
	if (w->stream) /* a stream's members go out whole, in order */
		return 0;
	qc_st_writer *st = qc_st_writer_new();
	if (!st)
		return nomem();
	int rc = shard_meta(st, groups_complete);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = qc_st_writer_declare(st, decl[i].name, decl[i].dtype, decl[i].ndim, decl[i].shape);
	if (rc) {
		qc_st_writer_free(st);
		return rc;
	}
	char *path = qc_path_join(w->partial, sname);
	if (!path) {
		qc_st_writer_free(st);
		return nomem();
	}
	rc = qc_ckw__plan_new(&w->plan, path, st);
	free(path);
	w->plan_gc = groups_complete;
	return rc;
}

/* Record a shard's tensors for the index and the manifest: each one's
 * XXH3-64 from the plan that wrote it, or from its data. */
static int record_tensors(qc_ckpt_writer *w, const char *sname, const qc_tensor *views, size_t n,
                          const qc_ckw_plan *written)
{
	for (size_t i = 0; i < n; i++) {
		const qc_tensor *t = &views[i];
		uint64_t h;
		if (written)
			QC_TRY(qc_ckw__plan_hash(written, t->name, &h));
		else
			h = qc_xxh3_64(t->data, t->nbytes);
		QC_TRY(qc_manifest_set_tensor(w->man, t->name, t->dtype, t->ndim, t->shape, h));
		if (json_object_set_new(w->wmap, t->name, json_string(sname)) != 0)
			return nomem();
		w->total_size += t->nbytes;
	}
	return take_name(w, sname);
}

int qc_ckw_end_shard(qc_ckpt_writer *w, int groups_complete)
{
	QC_TRY(check_usable(w));
	if (w->verbatim)
		return qc_seterr(QC_EINVAL, "cannot end a shard: the writer is in verbatim mode");
	char sname[64];
	QC_TRY(next_shard(w, sname, groups_complete));
	if (!w->cur && !(w->cur = qc_st_writer_new()))
		return nomem();
	int rc = shard_meta(w->cur, groups_complete);
	uint64_t size;
	if (rc == 0)
		rc = qc_st_writer_layout(w->cur, &size);
	if (rc)
		goto out;
	size_t n = qc_st_writer_count(w->cur), badi;
	const qc_tensor *views = qc_st_writer_at(w->cur, 0);
	if (qc_ckpt__order_names(&w->complete, views, n, groups_complete, &badi) != 0) {
		char gd[48];
		rc = qc_seterr(QC_EINVAL, "cannot write '%s': tensor '%s' of %s comes after earlier shards "
		               "completed it (shards must be written in layer order)", sname, views[badi].name,
		               qc_ckpt__group_desc(qc_ckpt_group_of(views[badi].name), gd));
		goto out;
	}
	/* the small files that precede the first shard go out now */
	if (w->shards_done == 0 && (rc = flush_files(w, w->pre, &w->npre)) != 0)
		goto out;
	if (w->plan) {
		/* written meanwhile; a plan that did not hold (another tensor
		 * set, other metadata) is only slower: the shard is written
		 * again below, replacing the file */
		int ok;
		qc_h128 fh;
		uint64_t psize;
		rc = qc_ckw__plan_finish(w->plan, &ok, &psize, &fh);
		if (rc == 0 && ok && (w->plan_gc != groups_complete || psize != size))
			ok = 0;
		if (rc == 0 && ok && (rc = record_tensors(w, sname, views, n, w->plan)) == 0)
			rc = qc_manifest_set_file(w->man, sname, size, fh);
		if (rc == 0)
			*(ok ? &w->plans_held : &w->plans_broken) += 1;
		qc_ckw__plan_free(w->plan);
		w->plan = NULL;
		if (rc || ok)
			goto out;
	}
	rc = record_tensors(w, sname, views, n, NULL);
	if (rc == 0)
		rc = put_member(w, sname, size, st_fill, w->cur, 1);
out:
	if (rc)
		w->broken = 1;
	qc_ckw__plan_free(w->plan);
	w->plan = NULL;
	qc_st_writer_free(w->cur);
	w->cur = NULL;
	if (rc == 0)
		w->shards_done++;
	return rc;
}

int qc_ckw_member_hash(const qc_ckpt_writer *w, const char *name, uint64_t *size, qc_h128 *h)
{
	if (!w->man)
		return qc_seterr(QC_ENOTFOUND, "'%s': no hashes in verbatim mode", w->path);
	return qc_manifest_file(w->man, name, size, h);
}

int qc_ckw_set_base(qc_ckpt_writer *w, const char *fingerprint_hex, const char *source)
{
	if (w->verbatim)
		return qc_seterr(QC_EINVAL, "cannot set the base: the writer is in verbatim mode");
	return qc_manifest_set_base(w->man, fingerprint_hex, source);
}

int qc_ckw_inherit(qc_ckpt_writer *w, const qc_manifest *m)
{
	if (w->verbatim)
		return qc_seterr(QC_EINVAL, "cannot inherit a manifest: the writer is in verbatim mode");
	/* qc_manifest_inherit replaces provenance: keep ours aside, take the
	 * input's, then append ours after it */
	qc_manifest *own = qc_manifest_new();
	if (!own)
		return nomem();
	int rc = qc_manifest_inherit(own, w->man);
	if (rc == 0)
		rc = qc_manifest_inherit(w->man, m);
	for (size_t i = 0; rc == 0 && i < qc_manifest_history_count(own); i++) {
		int argc;
		char *const *argv;
		if ((rc = qc_manifest_history_argv(own, i, &argc, &argv)) == 0)
			rc = qc_manifest_add_history(w->man, qc_manifest_history_tool(own, i),
			                             qc_manifest_history_version(own, i), argc, argv);
	}
	for (size_t i = 0; rc == 0 && i < qc_manifest_token_set_count(own); i++) {
		const char *role;
		qc_h128 h;
		int dup = 0;
		if ((rc = qc_manifest_token_set(own, i, &role, &h)) != 0)
			break;
		for (size_t j = 0; j < qc_manifest_token_set_count(w->man); j++) {
			const char *r2;
			qc_h128 h2;
			if (qc_manifest_token_set(w->man, j, &r2, &h2) == 0 && strcmp(r2, role) == 0 &&
			    qc_h128_eq(h, h2))
				dup = 1;
		}
		if (!dup)
			rc = qc_manifest_add_token_set(w->man, role, h);
	}
	if (rc == 0 && qc_manifest_base(own))
		rc = qc_manifest_set_base(w->man, qc_manifest_base(own), qc_manifest_base_source(own));
	qc_manifest_free(own);
	return rc;
}

int qc_ckw_add_token_set(qc_ckpt_writer *w, const char *role, qc_h128 hash)
{
	if (w->verbatim)
		return qc_seterr(QC_EINVAL, "cannot add a token set: the writer is in verbatim mode");
	return qc_manifest_add_token_set(w->man, role, hash);
}

// ---------------------------------------------------------------- close

/* Move "<path>.partial" to path, replacing what is there (force). */
static int commit_dir(qc_ckpt_writer *w)
{
	struct stat st;
	if (lstat(w->path, &st) != 0 || (S_ISDIR(st.st_mode) && empty_dir(w->path))) {
		/* nothing there, or an empty directory rename(2) replaces */
		if (rename(w->partial, w->path) != 0)
			return qc_seterr(QC_EIO, "cannot rename '%s' to '%s':", w->partial, w->path);
		qc_cleanup_remove(w->partial);
		return 0;
	}
	if (!w->force)
		return qc_seterr(QC_EINVAL, "cannot write '%s': it appeared while writing", w->path);
	/* swap the names in one step, then remove the old tree under the
	 * partial name; fall back to two renames where exchange is unsupported */
	if (renameat2(AT_FDCWD, w->partial, AT_FDCWD, w->path, RENAME_EXCHANGE) == 0)
		return qc_rmtree(w->partial);
	if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
		return qc_seterr(QC_EIO, "cannot replace '%s':", w->path);
	size_t n = strlen(w->path) + 32;
	char *old = malloc(n);
	if (!old)
		return nomem();
	snprintf(old, n, "%s.old-%ld", w->path, (long)getpid());
	int rc = 0;
	if (rename(w->path, old) != 0)
		rc = qc_seterr(QC_EIO, "cannot move '%s' aside:", w->path);
	else if (rename(w->partial, w->path) != 0) {
		rc = qc_seterr(QC_EIO, "cannot rename '%s' to '%s':", w->partial, w->path);
		(void)rename(old, w->path);
	} else {
		qc_cleanup_remove(w->partial);
		rc = qc_rmtree(old);
	}
	free(old);
	return rc;
}

static int write_index(qc_ckpt_writer *w)
{
	/* {"metadata": {"total_size": N}, "weight_map": {...}} as transformers
	 * writes it (json.dumps(indent=2, sort_keys=True) + "\n": qc_json_dump) */
	json_t *root = json_object(), *meta = json_object();
	if (!root || !meta) {
		json_decref(root);
		json_decref(meta);
		return nomem();
	}
	/* json_object_set_new takes meta even when it fails */
	if (json_object_set_new(root, "metadata", meta) ||
	    json_object_set_new(meta, "total_size", json_integer((json_int_t)w->total_size)) ||
	    json_object_set(root, "weight_map", w->wmap)) {
		json_decref(root);
		return nomem();
	}
	char *text = NULL;
	size_t len = 0;
	int rc = qc_json_dump(root, &text, &len);
	json_decref(root);
	if (rc == 0) {
		struct pfile f = { QC_CKPT_INDEX_NAME, (unsigned char *)text, len };
		rc = take_name(w, f.name);
		if (rc == 0)
			rc = put_file(w, &f, 1);
	}
	free(text);
	return rc;
}

static int write_manifest(qc_ckpt_writer *w)
{
	QC_TRY(qc_manifest_update_fingerprint(w->man));
	if (!qc_manifest_base(w->man))
		QC_TRY(qc_manifest_set_base(w->man, qc_manifest_get_fingerprint(w->man), NULL));
	char *text;
	size_t len;
	QC_TRY(qc_manifest_to_json(w->man, &text, &len));
	struct pfile f = { QC_MANIFEST_NAME, (unsigned char *)text, len };
	int rc = take_name(w, f.name);
	if (rc == 0)
		rc = put_file(w, &f, 0);
	free(text);
	return rc;
}

int qc_ckw_close(qc_ckpt_writer *w)
{
	int rc = check_usable(w);
	if (rc == 0 && !w->verbatim) {
		if (w->cur && qc_st_writer_count(w->cur) > 0)
			rc = qc_seterr(QC_EINVAL, "cannot finish '%s': tensors were added after the last shard",
			               w->path);
		else if (w->shards_done != w->n_shards)
			rc = qc_seterr(QC_EINVAL, "cannot finish '%s': %d of %d shards were written", w->path,
			               w->shards_done, w->n_shards);
		if (rc == 0 && w->n_shards > 1)
			rc = write_index(w);
		if (rc == 0)
			rc = flush_files(w, w->post, &w->npost);
		if (rc == 0)
			rc = write_manifest(w);
	}
	if (rc == 0 && w->stream)
		rc = qc_tar_write_end(&w->out);
	if (rc == 0 && !w->stream)
		rc = commit_dir(w);
	if (rc) {
		qc_ckw_abort(w);
		return rc;
	}
	writer_free(w);
	return 0;
}

void qc_ckw_abort(qc_ckpt_writer *w)
{
	if (!w)
		return;
	/* a stream cannot be taken back; it ends without its end-of-archive
	 * blocks, which every reader reports as a truncated stream */
	if (!w->stream && !w->keep_partial && w->partial)
		qc_rmtree(w->partial);
	writer_free(w);
}
