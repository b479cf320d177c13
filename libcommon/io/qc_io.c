/*
 * qc_io.c - sinks, sources (plain or zstd), whole files, mmap, atomic output
 * and path helpers (see qc_io.h).
 *
 * Sources read with one large buffer (QC_SRC_BUF) so that tar headers and
 * other small reads cost no syscall each, while large reads (tensor data)
 * bypass the buffer and land directly in the caller's memory: reading a
 * stream stays one copy from the kernel, the same as cat.
 */
#include "qc_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "qc_cleanup.h"
#include "qc_err.h"

/* Raw read buffer: 1 MiB amortizes syscalls and keeps zstd fed in big blocks
 * (the fuzz build defines a smaller one). */
#ifndef QC_SRC_BUF
#define QC_SRC_BUF ((size_t)1 << 20)
#endif
/* Largest zstd window accepted: 2 GiB, as `zstd --long=31` writes (a frame
 * that asks for more is refused; one that asks for this much gets it, even
 * from a few bytes: the price of reading such streams). The fuzz build
 * caps it lower (Makefile) so that its 1 GiB allocation limit finds
 * parsers' allocations rather than this one. */
#ifndef QC_ZSTD_WINDOW_LOG_MAX
#define QC_ZSTD_WINDOW_LOG_MAX 31
#endif
/* Largest single read()/write() request; Linux caps transfers at 0x7ffff000. */
#define QC_IO_CHUNK ((size_t)1 << 30)

// ---------------------------------------------------------------- sinks

int qc_sink_write(qc_sink *s, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	int rc = s->write(s, data, len);
	if (rc < 0)
		return rc;
	s->written += len;
	return 0;
}

int qc_sink_zeros(qc_sink *s, size_t n)
{
	static const unsigned char zeros[4096];
	while (n > 0) {
		size_t k = n < sizeof zeros ? n : sizeof zeros;
		QC_TRY(qc_sink_write(s, zeros, k));
		n -= k;
	}
	return 0;
}

/* Write all of buf to fd, looping over partial writes and EINTR. */
static int write_full(int fd, const void *buf, size_t len, const char *name)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len < QC_IO_CHUNK ? len : QC_IO_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return qc_seterr(QC_EIO, "write error on '%s':", name);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fd_sink_write(qc_sink *s, const void *data, size_t len)
{
	return write_full((int)(intptr_t)s->ctx, data, len, s->name ? s->name : "?");
}

void qc_sink_fd(qc_sink *s, int fd, const char *name)
{
	memset(s, 0, sizeof *s);
	s->write = fd_sink_write;
	s->ctx = (void *)(intptr_t)fd;
	s->name = name;
}

static int membuf_write(qc_sink *s, const void *data, size_t len)
{
	qc_membuf *b = s->ctx;
	if (len > SIZE_MAX - b->len - 1)
		return qc_seterr(QC_ENOMEM, "cannot buffer '%s': out of memory", s->name);
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap = cap > SIZE_MAX / 2 ? b->len + len + 1 : cap * 2;
		unsigned char *p = realloc(b->data, cap);
		if (!p)
			return qc_seterr(QC_ENOMEM, "cannot buffer '%s': out of memory", s->name);
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

void qc_sink_membuf(qc_sink *s, qc_membuf *b, const char *name)
{
	memset(s, 0, sizeof *s);
	s->write = membuf_write;
	s->ctx = b;
	s->name = name ? name : "<memory>";
}

void qc_membuf_free(qc_membuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

// ---------------------------------------------------------------- sources

struct qc_source {
	int fd;
	int own_fd;
	char *name;
	unsigned char *buf;     /* raw (possibly compressed) bytes [pos, len) pending */
	size_t pos, len;
	int eof;                /* read() returned 0 */
	uint64_t file_size;     /* for seekable sources */
	uint64_t raw_off;       /* file position of fd (seekable accounting) */
	int seekable;           /* plain regular file: skip may lseek */
	ZSTD_DStream *z;        /* non-NULL: decompressing */
	size_t z_last;          /* last ZSTD_decompressStream result (0: frame ended) */
	uint64_t offset;        /* logical bytes delivered */
};

/* Refill the raw buffer; 0 with s->eof set at end, or QC_EIO. */
static int raw_fill(qc_source *s)
{
	s->pos = s->len = 0;
	for (;;) {
		ssize_t n = read(s->fd, s->buf, QC_SRC_BUF);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return qc_seterr(QC_EIO, "read error on '%s':", s->name);
		}
		if (n == 0)
			s->eof = 1;
		s->len = (size_t)n;
		s->raw_off += (size_t)n;
		return 0;
	}
}

int qc_source_open(qc_source **out, const char *path)
{
	*out = NULL;
	int is_stdin = strcmp(path, "-") == 0;
	qc_source *s = calloc(1, sizeof *s);
	if (!s)
		return qc_seterr(QC_ENOMEM, "cannot open '%s': out of memory", path);
	s->fd = -1;
	s->name = strdup(is_stdin ? "<stdin>" : path);
	s->buf = malloc(QC_SRC_BUF);
	int rc = 0;
	if (!s->name || !s->buf) {
		rc = qc_seterr(QC_ENOMEM, "cannot open '%s': out of memory", path);
		goto fail;
	}
	if (is_stdin) {
		s->fd = 0;
	} else {
		s->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (s->fd < 0) {
			rc = qc_seterr(QC_EIO, "cannot open '%s':", path);
			goto fail;
		}
		s->own_fd = 1;
	}
	struct stat st;
	if (fstat(s->fd, &st) != 0) {
		rc = qc_seterr(QC_EIO, "cannot stat '%s':", s->name);
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		rc = qc_seterr(QC_EIO, "cannot read '%s':", s->name);
		goto fail;
	}
	/* a pipe's default 64 KiB makes each transfer a context switch; ask for
	 * 1 MiB (the unprivileged limit), ignoring a refusal */
	if (S_ISFIFO(st.st_mode))
		(void)fcntl(s->fd, F_SETPIPE_SZ, 1 << 20);
	if (S_ISREG(st.st_mode)) {
		/* stdin may be a file already partly read: count from where it is */
		off_t cur = lseek(s->fd, 0, SEEK_CUR);
		s->seekable = cur >= 0 && cur <= st.st_size;
		s->file_size = (uint64_t)st.st_size;
		s->raw_off = s->seekable ? (uint64_t)cur : 0;
		(void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	/* Gather the first 4 bytes (a pipe may deliver fewer per read). */
	rc = raw_fill(s);
	while (rc == 0 && !s->eof && s->len < 4) {
		ssize_t n = read(s->fd, s->buf + s->len, QC_SRC_BUF - s->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = qc_seterr(QC_EIO, "read error on '%s':", s->name);
		} else if (n == 0) {
			s->eof = 1;
		} else {
			s->len += (size_t)n;
			s->raw_off += (size_t)n;
		}
	}
	if (rc)
		goto fail;
	if (s->len >= 4) {
		uint32_t m = (uint32_t)s->buf[0] | (uint32_t)s->buf[1] << 8 |
		             (uint32_t)s->buf[2] << 16 | (uint32_t)s->buf[3] << 24;
		if (m == ZSTD_MAGICNUMBER || (m & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START) {
			s->z = ZSTD_createDStream();
			if (!s->z) {
				rc = qc_seterr(QC_ENOMEM, "cannot open '%s': out of memory", s->name);
				goto fail;
			}
			/* accept long-distance-matching streams (zstd --long=31) */
			ZSTD_DCtx_setParameter(s->z, ZSTD_d_windowLogMax, QC_ZSTD_WINDOW_LOG_MAX);
			s->seekable = 0;
			s->z_last = 1;
		}
	}
	*out = s;
	return 0;
fail:
	qc_source_close(s);
	return rc;
}

/* Plain read: buffered bytes first, then large reads straight into dst. */
static int plain_read(qc_source *s, unsigned char *dst, size_t len, size_t *got)
{
	size_t done = 0;
	while (done < len) {
		if (s->pos < s->len) {
			size_t k = s->len - s->pos;
			if (k > len - done)
				k = len - done;
			memcpy(dst + done, s->buf + s->pos, k);
			s->pos += k;
			done += k;
			continue;
		}
		if (s->eof)
			break;
		if (len - done >= QC_SRC_BUF) {
			size_t want = len - done < QC_IO_CHUNK ? len - done : QC_IO_CHUNK;
			ssize_t n = read(s->fd, dst + done, want);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return qc_seterr(QC_EIO, "read error on '%s':", s->name);
			}
			if (n == 0)
				s->eof = 1;
			s->raw_off += (size_t)n;
			done += (size_t)n;
			continue;
		}
		QC_TRY(raw_fill(s));
	}
	*got = done;
	return 0;
}

/* zstd read: decompress into dst until full or the input ends cleanly. */
static int zstd_read(qc_source *s, unsigned char *dst, size_t len, size_t *got)
{
	ZSTD_outBuffer ob = { dst, len, 0 };
	while (ob.pos < ob.size) {
		if (s->pos == s->len) {
			if (s->eof)
				break;
			QC_TRY(raw_fill(s));
			if (s->len == 0)
				continue;       /* eof now set; loop checks it */
		}
		ZSTD_inBuffer ib = { s->buf, s->len, s->pos };
		size_t r = ZSTD_decompressStream(s->z, &ob, &ib);
		s->pos = ib.pos;
		if (ZSTD_isError(r))
			return qc_seterr(QC_EFORMAT, "corrupt zstd data in '%s': %s", s->name,
			                 ZSTD_getErrorName(r));
		s->z_last = r;
	}
	/* Input ended inside a frame: the compressed stream is truncated. */
	if (ob.pos < ob.size && s->z_last != 0)
		return qc_seterr(QC_EFORMAT, "unexpected end of compressed data in '%s'", s->name);
	*got = ob.pos;
	return 0;
}

int qc_source_read(qc_source *s, void *buf, size_t len, size_t *got)
{
	size_t n = 0;
	*got = 0;
	int rc = s->z ? zstd_read(s, buf, len, &n) : plain_read(s, buf, len, &n);
	if (rc < 0)
		return rc;
	s->offset += n;
	*got = n;
	return 0;
}

int qc_source_read_full(qc_source *s, void *buf, size_t len)
{
	size_t got;
	QC_TRY(qc_source_read(s, buf, len, &got));
	if (got < len)
		return qc_seterr(QC_EFORMAT, "unexpected end of '%s'", s->name);
	return 0;
}

int qc_source_skip(qc_source *s, uint64_t len)
{
	if (s->seekable) {
		/* consume what is buffered, then seek over the rest */
		size_t k = s->len - s->pos;
		if (k > len)
			k = (size_t)len;
		s->pos += k;
		s->offset += k;
		uint64_t rest = len - k;
		if (rest == 0)
			return 0;
		if (rest > s->file_size - s->raw_off) {
			/* position at the end so later reads see EOF too */
			s->offset += s->file_size - s->raw_off;
			s->raw_off = s->file_size;
			(void)lseek(s->fd, 0, SEEK_END);
			s->eof = 1;
			return qc_seterr(QC_EFORMAT, "unexpected end of '%s'", s->name);
		}
		if (lseek(s->fd, (off_t)rest, SEEK_CUR) < 0)
			return qc_seterr(QC_EIO, "cannot seek in '%s':", s->name);
		s->raw_off += rest;
		s->offset += rest;
		return 0;
	}
	unsigned char tmp[65536];
	while (len > 0) {
		size_t want = len < sizeof tmp ? (size_t)len : sizeof tmp, got;
		QC_TRY(qc_source_read(s, tmp, want, &got));
		if (got < want)
			return qc_seterr(QC_EFORMAT, "unexpected end of '%s'", s->name);
		len -= got;
	}
	return 0;
}

uint64_t qc_source_offset(const qc_source *s) { return s->offset; }
const char *qc_source_name(const qc_source *s) { return s->name; }
int qc_source_compressed(const qc_source *s) { return s->z != NULL; }

void qc_source_close(qc_source *s)
{
	if (!s)
		return;
	if (s->own_fd && s->fd >= 0)
		close(s->fd);
	ZSTD_freeDStream(s->z);
	free(s->buf);
	free(s->name);
	free(s);
}

// ---------------------------------------------------------------- whole files

int qc_read_file(const char *path, size_t max, char **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qc_seterr(QC_EIO, "cannot open '%s':", path);
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = qc_seterr(QC_EIO, "cannot stat '%s':", path);
		close(fd);
		return rc;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		errno = EISDIR;
		return qc_seterr(QC_EIO, "cannot read '%s':", path);
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
		close(fd);
		return qc_seterr(QC_EFORMAT, "'%s' is too large (%lld bytes, at most %zu)", path,
		                 (long long)st.st_size, max);
	}
	/* Read to EOF rather than trusting st_size: works for pipes and for
	 * files that change size under us. */
	size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536, n = 0;
	char *buf = malloc(cap);
	int rc = 0;
	if (!buf) {
		rc = qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", path);
		goto out;
	}
	for (;;) {
		if (n + 1 >= cap) {
			if (cap > max + 1) {
				rc = qc_seterr(QC_EFORMAT, "'%s' is too large (more than %zu bytes)", path, max);
				goto out;
			}
			size_t ncap = cap * 2;
			char *p = realloc(buf, ncap);
			if (!p) {
				rc = qc_seterr(QC_ENOMEM, "cannot read '%s': out of memory", path);
				goto out;
			}
			buf = p;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = qc_seterr(QC_EIO, "cannot read '%s':", path);
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		rc = qc_seterr(QC_EFORMAT, "'%s' is too large (more than %zu bytes)", path, max);
		goto out;
	}
	buf[n] = 0;
	*data = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

/* What an empty file maps to: a valid, non-NULL address never unmapped. */
static const unsigned char empty_map[1];

int qc_map(const char *path, const void **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qc_seterr(QC_EIO, "cannot open '%s':", path);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = qc_seterr(QC_EIO, "cannot stat '%s':", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = qc_seterr(QC_EIO, "cannot map '%s': not a regular file", path);
		goto out;
	}
	if (st.st_size == 0) {
		*data = empty_map;
		goto out;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = qc_seterr(QC_EIO, "cannot map '%s':", path);
		goto out;
	}
	*data = p;
	*len = (size_t)st.st_size;
out:
	close(fd);
	return rc;
}

void qc_unmap(const void *data, size_t len)
{
	if (data && data != empty_map && len > 0)
		munmap((void *)data, len);
}

// ---------------------------------------------------------------- atomic output

/*
 * Temporaries are named here, recorded for the signal handler
 * (qc_cleanup.h), then created exclusively: with mkstemp/mkdtemp the name
 * exists on disk before it can be recorded, and a signal in between left it
 * behind. The six characters replacing "XXXXXX" at the end of tmpl come
 * from the clock, the process and a counter through a mixing function;
 * make(path) creates, -1 with errno EEXIST asking for another name. On
 * success the path stays recorded; the result is make's (a descriptor or
 * 0), or -1 with errno set.
 */
static int create_recorded(char *tmpl, int (*make)(const char *path))
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static _Atomic uint64_t counter;
	char *x = tmpl + strlen(tmpl) - 6;
	for (int attempt = 0; attempt < 1000; attempt++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
		             ((uint64_t)getpid() << 42) ^ (counter++ * 0x9e3779b97f4a7c15ull);
		v ^= v >> 33;
		v *= 0xff51afd7ed558ccdull;
		v ^= v >> 33;
		for (int i = 0; i < 6; i++, v /= 62)
			x[i] = chars[v % 62];
		qc_cleanup_add(tmpl);
		int r = make(tmpl);
		if (r >= 0)
			return r;
		int e = errno;
		qc_cleanup_remove(tmpl);
		errno = e;
		if (e != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

static int make_file(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

static int make_dir(const char *path)
{
	return mkdir(path, 0700);
}

int qc_atomic_open(qc_atomic *a, const char *path)
{
	a->final_path = NULL;
	a->tmp_path = NULL;
	a->fd = -1;
	a->direct = 0;
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode))
			return qc_seterr(QC_EINVAL, "cannot write '%s': it is a directory", path);
		int dfd = open(path, O_WRONLY | O_CLOEXEC);
		if (dfd < 0)
			return qc_seterr(QC_EIO, "cannot open '%s':", path);
		if (!(a->final_path = strdup(path))) {
			close(dfd);
			return qc_seterr(QC_ENOMEM, "cannot write '%s': out of memory", path);
		}
		a->fd = dfd;
		a->direct = 1;
		return 0;
	}
	const char *slash = strrchr(path, '/');
	size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
	const char *base = slash ? slash + 1 : path;
	if (!*base)
		return qc_seterr(QC_EINVAL, "cannot write '%s': not a file name", path);
	size_t n = dlen + 1 + strlen(base) + sizeof ".tmp-XXXXXX";
	char *final = strdup(path), *tmp = malloc(n);
	if (!final || !tmp) {
		free(final);
		free(tmp);
		return qc_seterr(QC_ENOMEM, "cannot write '%s': out of memory", path);
	}
	memcpy(tmp, path, dlen);
	snprintf(tmp + dlen, n - dlen, ".%s.tmp-XXXXXX", base);
	int fd = create_recorded(tmp, make_file);
	if (fd < 0) {
		int rc = qc_seterr(QC_EIO, "cannot create a temporary file for '%s':", path);
		free(final);
		free(tmp);
		return rc;
	}
	/* made 0600, as mkstemp makes them; checkpoints are ordinary readable files */
	(void)fchmod(fd, 0644);
	a->final_path = final;
	a->tmp_path = tmp;
	a->fd = fd;
	return 0;
}

int qc_atomic_commit(qc_atomic *a)
{
	if (a->direct) {
		int rc = close(a->fd) != 0 ? qc_seterr(QC_EIO, "write error on '%s':", a->final_path) : 0;
		a->fd = -1;
		a->direct = 0;
		free(a->final_path);
		a->final_path = NULL;
		return rc;
	}
	if (!a->tmp_path)
		return qc_seterr(QC_EINVAL, "nothing to commit");
	int rc = 0;
	if (close(a->fd) != 0)
		rc = qc_seterr(QC_EIO, "write error on '%s':", a->final_path);
	a->fd = -1;
	if (rc == 0 && rename(a->tmp_path, a->final_path) != 0)
		rc = qc_seterr(QC_EIO, "cannot rename '%s' to '%s':", a->tmp_path, a->final_path);
	if (rc)
		unlink(a->tmp_path);
	qc_cleanup_remove(a->tmp_path);
	free(a->tmp_path);
	free(a->final_path);
	a->tmp_path = a->final_path = NULL;
	return rc;
}

void qc_atomic_abort(qc_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	a->direct = 0;
	if (a->tmp_path) {
		unlink(a->tmp_path);
		qc_cleanup_remove(a->tmp_path);
	}
	free(a->tmp_path);
	free(a->final_path);
	a->tmp_path = a->final_path = NULL;
}

int qc_write_file_atomic(const char *path, const void *data, size_t len)
{
	qc_atomic a;
	QC_TRY(qc_atomic_open(&a, path));
	int rc = write_full(a.fd, data, len, path);
	if (rc) {
		qc_atomic_abort(&a);
		return rc;
	}
	return qc_atomic_commit(&a);
}

// ---------------------------------------------------------------- paths

int qc_safe_filename(const char *name)
{
	if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++, n++)
		if (*p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f)
			return 0;
	return n <= 255;
}

int qc_mkdirs(const char *path, int mode)
{
	char *p = strdup(path);
	if (!p)
		return qc_seterr(QC_ENOMEM, "cannot create '%s': out of memory", path);
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != 0)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
			rc = qc_seterr(QC_EIO, "cannot create directory '%s':", p);
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	if (rc == 0 && !qc_is_dir(path)) {
		errno = ENOTDIR;
		rc = qc_seterr(QC_EIO, "cannot create directory '%s':", path);
	}
	free(p);
	return rc;
}

/* Remove the contents of the directory open as dfd (consumed), recursively,
 * never following symbolic links. */
static int rm_contents(int dfd, const char *path)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return qc_seterr(QC_EIO, "cannot open directory '%s':", path);
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT)
				continue;
			rc = qc_seterr(QC_EIO, "cannot stat '%s/%s':", path, e->d_name);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			char *sp = qc_path_join(path, e->d_name);
			if (sub < 0 || !sp) {
				rc = sub < 0 ? qc_seterr(QC_EIO, "cannot open directory '%s/%s':", path, e->d_name)
				             : qc_seterr(QC_ENOMEM, "out of memory");
				if (sub >= 0)
					close(sub);
				free(sp);
				break;
			}
			rc = rm_contents(sub, sp);
			free(sp);
			if (rc == 0 && unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0)
				rc = qc_seterr(QC_EIO, "cannot remove '%s/%s':", path, e->d_name);
		} else if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
			rc = qc_seterr(QC_EIO, "cannot remove '%s/%s':", path, e->d_name);
		}
	}
	if (rc == 0 && errno != 0)
		rc = qc_seterr(QC_EIO, "cannot read directory '%s':", path);
	closedir(d);
	return rc;
}

static int rmtree(const char *path)
{
	if (!path || !*path || strcmp(path, "/") == 0)
		return qc_seterr(QC_EINVAL, "refusing to remove '%s'", path ? path : "");
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : qc_seterr(QC_EIO, "cannot stat '%s':", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) != 0)
			return qc_seterr(QC_EIO, "cannot remove '%s':", path);
		return 0;
	}
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return qc_seterr(QC_EIO, "cannot open directory '%s':", path);
	QC_TRY(rm_contents(dfd, path));
	if (rmdir(path) != 0)
		return qc_seterr(QC_EIO, "cannot remove '%s':", path);
	return 0;
}

int qc_rmtree(const char *path)
{
	int rc = rmtree(path);
	if (rc == 0)
		qc_cleanup_remove(path);
	return rc;
}

char *qc_path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	int slash = a > 0 && dir[a - 1] != '/';
	char *p = malloc(a + (size_t)slash + b + 1);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	if (slash)
		p[a] = '/';
	memcpy(p + a + (size_t)slash, name, b + 1);
	return p;
}

int qc_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int qc_mkdtemp(char **out, const char *parent, const char *prefix)
{
	*out = NULL;
	if (!parent) {
		parent = getenv("TMPDIR");
		if (!parent || !*parent)
			parent = "/tmp";
	}
	size_t n = strlen(parent) + strlen(prefix) + 9;
	char *p = malloc(n);
	if (!p)
		return qc_seterr(QC_ENOMEM, "cannot create a temporary directory: out of memory");
	snprintf(p, n, "%s/%sXXXXXX", parent, prefix);
	if (create_recorded(p, make_dir) < 0) {
		int rc = qc_seterr(QC_EIO, "cannot create a temporary directory in '%s':", parent);
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}
