/*
 * qc_ckpt_plan.c - a directory shard written while it is being filled
 * (qc_ckw_plan_shard in qc_ckpt.h; the interface is in qc_ckpt_int.h).
 *
 * The shard's tensors are declared before any is added, so its layout (the
 * header, every tensor's offset) is fixed at once: the file is created with
 * its header, and each declared tensor, when added, is queued for one
 * background thread that writes it at its offset (pwrite) and hashes it.
 * The caller goes on computing meanwhile: a quantizer's untouched embedding
 * and lm_head (2.1 GB at the 8B vocabulary) are written while the layer's
 * GEMMs run instead of after them.
 *
 * Hashes. Each tensor's XXH3-64 is computed from the same 1 MiB pieces as
 * they are written. The file's XXH3-128 needs the bytes in file order, which
 * the adds need not follow: the thread keeps a cursor in layout order; a
 * tensor written while the cursor stands on it feeds the file hash from the
 * same pieces, and tensors written ahead of the cursor are hashed from
 * memory when the cursor reaches them (their data stays valid until the
 * shard ends, the writer's contract).
 *
 * One thread, not qc_pool: this is asynchronous work overlapping the
 * caller, not a fork-join. The thread touches only the file, the hashers
 * and the slots handed to it; everything shared is under the mutex.
 */
#include "qc_ckpt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_strmap.h"

struct slot {
	const qc_tensor *decl;  /* name, dtype, shape, nbytes (in the declaration writer) */
	uint64_t off;           /* file offset of the data */
	const void *data;       /* the caller's, once added */
	int added, written;     /* written: by the thread (under the mutex) */
	uint64_t hash;          /* XXH3-64, once written */
};

struct qc_ckw_plan {
	qc_st_writer *decl;     /* owned: the declarations and the header */
	struct slot *s;         /* layout order */
	qc_strmap by_name;      /* name -> slot index */
	size_t n, n_added;
	uint64_t size;
	int broken;             /* an add that the plan did not declare */
	int fd;
	char *path;
	/* the thread's own state: only it touches these once it runs */
	qc_hasher *fh;          /* the file's XXH3-128 */
	qc_hasher64 *th;        /* the current tensor's XXH3-64 */
	size_t cursor;          /* slots [0, cursor) are in the file hash */
	/* shared, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int started;
	size_t *queue, q_head, q_tail;   /* slot indices to write, FIFO */
	int busy, closing, cancel;
	int err;                /* first write error, with its message */
	char msg[512];
};

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

static int pwrite_all(qc_ckw_plan *p, const unsigned char *b, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t k = pwrite(p->fd, b, len, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return qc_seterr(QC_EIO, "write error on '%s':", p->path);
		b += k;
		len -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

/* Write slot k at its offset in pieces, each hashed for the tensor and, when
 * the file-hash cursor stands on k, for the file. Thread only. */
static int write_slot(qc_ckw_plan *p, size_t k)
{
	struct slot *s = &p->s[k];
	const unsigned char *b = s->data;
	size_t n = s->decl->nbytes;
	int feed = p->cursor == k;
	qc_hasher64_reset(p->th);
	for (size_t at = 0; at < n; at += QC_CKPT_CHUNK) {
		size_t len = n - at < QC_CKPT_CHUNK ? n - at : QC_CKPT_CHUNK;
		qc_hasher64_update(p->th, b + at, len);
		if (feed)
			qc_hasher_update(p->fh, b + at, len);
		QC_TRY(pwrite_all(p, b + at, len, s->off + at));
	}
	s->hash = qc_hasher64_digest(p->th);
	if (feed)
		p->cursor++;
	return 0;
}

/* Move the file-hash cursor over slots already written (their data hashed
 * again from memory). Thread only; written is read under the mutex. */
static void advance_cursor(qc_ckw_plan *p)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		int ready = p->cursor < p->n && p->s[p->cursor].written;
		pthread_mutex_unlock(&p->mu);
		if (!ready)
			return;
		const struct slot *s = &p->s[p->cursor];
		qc_hasher_update(p->fh, s->data, s->decl->nbytes);
		p->cursor++;
	}
}

static void *writer_main(void *arg)
{
	qc_ckw_plan *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->q_head == p->q_tail && !p->closing)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->q_head == p->q_tail)
			break;
		size_t k = p->queue[p->q_head++];
		if (p->cancel || p->err)
			continue;
		p->busy = 1;
		pthread_mutex_unlock(&p->mu);
		int rc = write_slot(p, k);
		pthread_mutex_lock(&p->mu);
		p->busy = 0;
		if (rc) {
			p->err = rc;
			snprintf(p->msg, sizeof p->msg, "%s", qc_errmsg());
		} else {
			p->s[k].written = 1;
			pthread_mutex_unlock(&p->mu);
			advance_cursor(p);
			pthread_mutex_lock(&p->mu);
		}
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int qc_ckw__plan_new(qc_ckw_plan **out, const char *path, qc_st_writer *decl)
{
	*out = NULL;
	qc_ckw_plan *p = calloc(1, sizeof *p);
	if (!p) {
		qc_st_writer_free(decl);
		return nomem();
	}
	p->decl = decl;
	p->fd = -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	unsigned char prefix[8];
	const char *header;
	size_t hlen;
	int rc = qc_st_writer_head(decl, prefix, &header, &hlen);
	if (rc == 0)
		rc = qc_st_writer_layout(decl, &p->size);
	if (rc)
		goto fail;
	p->n = qc_st_writer_count(decl);
	p->s = calloc(p->n ? p->n : 1, sizeof *p->s);
	p->queue = malloc((p->n ? p->n : 1) * sizeof *p->queue);
	p->path = strdup(path);
	p->fh = qc_hasher_new();
	p->th = qc_hasher64_new();
	if (!p->s || !p->queue || !p->path || !p->fh || !p->th) {
		rc = nomem();
		goto fail;
	}
	uint64_t off = 8 + (uint64_t)hlen;
	for (size_t i = 0; i < p->n; i++) {
		p->s[i].decl = qc_st_writer_at(decl, i);
		p->s[i].off = off;
		off += p->s[i].decl->nbytes;
		const char *nm = p->s[i].decl->name;
		if ((rc = qc_strmap_put(&p->by_name, nm, strlen(nm), (int32_t)i)) != 0)
			goto fail;
	}
	/* whatever is there (a file kept for --resume, a planted link) is
	 * replaced, never written through */
	if (unlink(path) != 0 && errno != ENOENT) {
		rc = qc_seterr(QC_EIO, "cannot replace '%s':", path);
		goto fail;
	}
	p->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (p->fd < 0) {
		rc = qc_seterr(QC_EIO, "cannot create '%s':", path);
		goto fail;
	}
	qc_hasher_update(p->fh, prefix, 8);
	qc_hasher_update(p->fh, header, hlen);
	if ((rc = pwrite_all(p, prefix, 8, 0)) != 0 ||
	    (rc = pwrite_all(p, (const unsigned char *)header, hlen, 8)) != 0)
		goto fail;
	if (pthread_create(&p->thread, NULL, writer_main, p) != 0) {
		/* no thread, no plan: the shard is written whole at its end, as
		 * without one (that path replaces the file) */
		qc_ckw__plan_free(p);
		return 0;
	}
	p->started = 1;
	*out = p;
	return 0;
fail:
	qc_ckw__plan_free(p);
	return rc;
}

static struct slot *find_slot(const qc_ckw_plan *p, const char *name)
{
	int32_t i = qc_strmap_get(&p->by_name, name, strlen(name));
	return i < 0 ? NULL : &p->s[i];
}

int qc_ckw__plan_add(qc_ckw_plan *p, const char *name, qc_dtype dt, int ndim,
                     const int64_t *shape, const void *data)
{
	if (p->broken)
		return 0;
	struct slot *s = find_slot(p, name);
	int same = s && !s->added && s->decl->dtype == dt && s->decl->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = s->decl->shape[i] == shape[i];
	if (!same) {
		p->broken = 1;
		return 0;
	}
	s->added = 1;
	s->data = data;
	p->n_added++;
	pthread_mutex_lock(&p->mu);
	p->queue[p->q_tail++] = (size_t)(s - p->s);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 1;
}

/* Stop the thread once its queue is done (or discarded, with cancel). */
static void join_thread(qc_ckw_plan *p, int cancel)
{
	if (!p->started)
		return;
	pthread_mutex_lock(&p->mu);
	p->closing = 1;
	p->cancel |= cancel;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	p->started = 0;
}

int qc_ckw__plan_finish(qc_ckw_plan *p, int *ok, uint64_t *size, qc_h128 *fh)
{
	*ok = 0;
	join_thread(p, p->broken);
	if (p->err)
		return qc_seterr(p->err, "%s", p->msg);
	int fd = p->fd;
	p->fd = -1;
	if (close(fd) != 0)
		return qc_seterr(QC_EIO, "write error on '%s':", p->path);
	if (p->broken || p->n_added != p->n)
		return 0;
	if (p->cursor != p->n)
		return qc_seterr(QC_EINTERNAL, "'%s': %zu of %zu tensors in the file hash", p->path,
		                 p->cursor, p->n);
	*ok = 1;
	*size = p->size;
	*fh = qc_hasher_digest128(p->fh);
	return 0;
}

int qc_ckw__plan_hash(const qc_ckw_plan *p, const char *name, uint64_t *h)
{
	const struct slot *s = find_slot(p, name);
	if (!s || !s->written)
		return qc_seterr(QC_EINTERNAL, "'%s': tensor '%s' was not written", p->path, name);
	*h = s->hash;
	return 0;
}

void qc_ckw__plan_free(qc_ckw_plan *p)
{
	if (!p)
		return;
	join_thread(p, 1);
	if (p->fd >= 0)
		close(p->fd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	qc_st_writer_free(p->decl);
	qc_hasher_free(p->fh);
	qc_hasher64_free(p->th);
	free(p->s);
	qc_strmap_free(&p->by_name);
	free(p->queue);
	free(p->path);
	free(p);
}
