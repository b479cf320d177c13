/*
 * qc_io.h - byte sinks and sources, whole-file helpers, atomic output.
 *
 * A qc_sink is where bytes go (a file descriptor, a memory buffer, a tar
 * member, a hashing tee); a qc_source is where a stream comes from (stdin, a
 * file, a zstd frame). Both report failures as QC_E* codes with the message
 * set, and both count the bytes that passed, so writers can check sizes they
 * promised in headers.
 *
 * Output files are written under a temporary name in the same directory and
 * renamed into place by qc_atomic_commit(), so a failed run never leaves a
 * partial file and never truncates an input that is being read (mmap).
 *
 * All sizes and offsets are 64-bit: checkpoint files and tar members exceed
 * 4 GiB at 70B and 405B shapes. Nothing here is thread-safe per object; distinct
 * objects may be used from distinct threads.
 */
#ifndef QC_IO_H
#define QC_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- sinks ---- */
typedef struct qc_sink qc_sink;
struct qc_sink {
	/* write all len bytes or fail; 0 or QC_E* (message set) */
	int (*write)(qc_sink *s, const void *data, size_t len);
	void *ctx;
	uint64_t written;     /* bytes accepted so far (maintained by qc_sink_write) */
	const char *name;     /* for messages: a path or "<stdout>" (not owned) */
};

/* Write through s->write and count the bytes; 0 or the sink's QC_E* code. */
int qc_sink_write(qc_sink *s, const void *data, size_t len);
/* Write n zero bytes (padding). */
int qc_sink_zeros(qc_sink *s, size_t n);
/* A sink over a file descriptor (not closed by the sink). Writes loop over
 * partial writes and EINTR; a failure is QC_EIO "write error on 'name': ...". */
void qc_sink_fd(qc_sink *s, int fd, const char *name);

/* A growable memory buffer and a sink appending to it (tests, small files).
 * The buffer owns data (free() it, or qc_membuf_free); it is always
 * NUL-terminated after a successful write (the NUL is not counted in len). */
typedef struct qc_membuf {
	unsigned char *data;
	size_t len, cap;
} qc_membuf;
void qc_sink_membuf(qc_sink *s, qc_membuf *b, const char *name);
void qc_membuf_free(qc_membuf *b);

/* ---- sources ---- */
typedef struct qc_source qc_source;

/* Open path for sequential reading; "-" is stdin (shown as "<stdin>").
 * A zstd frame (magic 28 B5 2F FD, or a skippable frame) is detected from
 * the first bytes and decompressed transparently (several concatenated
 * frames are one stream; windows up to 2 GiB, as `zstd --long=31` makes, are
 * accepted). A directory is QC_EIO (EISDIR). */
int qc_source_open(qc_source **out, const char *path);
/* Read up to len bytes; *got < len only at end of stream. 0 or QC_EIO/QC_EFORMAT
 * (corrupt or truncated compressed data). Large reads go straight into buf. */
int qc_source_read(qc_source *s, void *buf, size_t len, size_t *got);
/* Read exactly len bytes; a short read is QC_EFORMAT "unexpected end of 'name'". */
int qc_source_read_full(qc_source *s, void *buf, size_t len);
/* Skip len bytes (seeks in plain regular files); a stream that ends first is
 * QC_EFORMAT "unexpected end of 'name'". */
int qc_source_skip(qc_source *s, uint64_t len);
/* Bytes delivered (or skipped) so far, counted after decompression. */
uint64_t qc_source_offset(const qc_source *s);
const char *qc_source_name(const qc_source *s);
/* 1 when the stream is being decompressed from zstd. */
int qc_source_compressed(const qc_source *s);
void qc_source_close(qc_source *s);             /* NULL is a no-op */

/* ---- whole files ---- */
/* Read a whole (small) file into a malloc'd buffer with a terminating NUL
 * (not counted in *len). max bounds the size (QC_EFORMAT beyond). */
int qc_read_file(const char *path, size_t max, char **data, size_t *len);

/* Read-only memory map of a whole regular file (MAP_SHARED: pages come from
 * the page cache, nothing is copied). An empty file maps to a non-NULL
 * pointer with len 0. qc_unmap accepts what qc_map returned. */
int qc_map(const char *path, const void **data, size_t *len);
void qc_unmap(const void *data, size_t len);

/* ---- atomic output ---- */
typedef struct qc_atomic {
	char *final_path;
	char *tmp_path;
	int fd;
	int direct;       /* path is a device or FIFO (/dev/null, /dev/stdout):
	                     written in place, never renamed over */
} qc_atomic;

/* Create "<dir>/.<base>.tmp-XXXXXX" beside path (mode 0644) and open it for
 * writing. On failure *a is left so that qc_atomic_abort is a no-op. */
int qc_atomic_open(qc_atomic *a, const char *path);
/* fsync-free flush, rename to the final name; closes the fd. On failure the
 * temporary file is removed. */
int qc_atomic_commit(qc_atomic *a);
/* Close and unlink the temporary file. Safe to call after commit (no-op). */
void qc_atomic_abort(qc_atomic *a);

/* Write a whole buffer to path atomically. */
int qc_write_file_atomic(const char *path, const void *data, size_t len);

/* ---- paths ---- */
/* 1 when name is a plain relative file name safe to join to a directory:
 * not empty, at most 255 bytes, no '/' or '\\', not "." or "..", no NUL or
 * control bytes. */
int qc_safe_filename(const char *name);
/* mkdir -p; 0 or QC_EIO. */
int qc_mkdirs(const char *path, int mode);
/* rm -rf of a directory tree we created (refuses "/" and ""; does not follow
 * symbolic links; a missing path is not an error). */
int qc_rmtree(const char *path);
/* Join dir and name into a malloc'd string (NULL on out of memory). */
char *qc_path_join(const char *dir, const char *name);
/* 1 if path names an existing directory. */
int qc_is_dir(const char *path);
/* Create a fresh private directory "<parent>/<prefix>XXXXXX" (parent NULL:
 * $TMPDIR or /tmp); *out is malloc'd. */
int qc_mkdtemp(char **out, const char *parent, const char *prefix);

#endif
