/*
 * qc_io.h - byte sinks and sources, whole-file helpers, atomic output.
 *
 * A qc_sink is where bytes go (a file descriptor, a tar member, a hashing
 * tee); a qc_source is where a stream comes from (stdin, a file, a zstd
 * frame). Both report failures as QC_E* codes with the message set, and
 * both count the bytes that passed, so writers can check sizes they
 * promised in headers.
 *
 * Output files are written under a temporary name in the same directory and
 * renamed into place by qc_atomic_commit(), so a failed run never leaves a
 * partial file and never truncates an input that is being read (mmap).
 */
#ifndef QC_IO_H
#define QC_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- sinks ---- */
typedef struct qc_sink qc_sink;
struct qc_sink {
	/* write all len bytes or fail; 0 or QC_E* */
	int (*write)(qc_sink *s, const void *data, size_t len);
	void *ctx;
	uint64_t written;     /* bytes accepted so far (maintained by qc_sink_write) */
	const char *name;     /* for messages: a path or "<stdout>" */
};

int qc_sink_write(qc_sink *s, const void *data, size_t len);
/* Write n zero bytes (padding). */
int qc_sink_zeros(qc_sink *s, size_t n);
/* A sink over a file descriptor (not closed by the sink). */
void qc_sink_fd(qc_sink *s, int fd, const char *name);

/* ---- sources ---- */
typedef struct qc_source qc_source;

/* Open path for sequential reading; "-" is stdin (shown as "<stdin>").
 * A zstd frame (magic 28 B5 2F FD) is detected from the first bytes and
 * decompressed transparently. */
int qc_source_open(qc_source **out, const char *path);
/* Read up to len bytes; *got < len only at end of stream. 0 or QC_EIO/QC_EFORMAT. */
int qc_source_read(qc_source *s, void *buf, size_t len, size_t *got);
/* Read exactly len bytes; a short read is QC_EFORMAT ("unexpected end of ..."). */
int qc_source_read_full(qc_source *s, void *buf, size_t len);
/* Skip len bytes (seeks where it can). */
int qc_source_skip(qc_source *s, uint64_t len);
uint64_t qc_source_offset(const qc_source *s);
const char *qc_source_name(const qc_source *s);
void qc_source_close(qc_source *s);

/* ---- whole files ---- */
/* Read a whole (small) file into a malloc'd buffer with a terminating NUL
 * (not counted in *len). max bounds the size (QC_EFORMAT beyond). */
int qc_read_file(const char *path, size_t max, char **data, size_t *len);

/* Read-only memory map of a whole file. An empty file maps to a non-NULL
 * pointer with len 0. qc_unmap accepts what qc_map returned. */
int qc_map(const char *path, const void **data, size_t *len);
void qc_unmap(const void *data, size_t len);

/* ---- atomic output ---- */
typedef struct qc_atomic {
	char *final_path;
	char *tmp_path;
	int fd;
} qc_atomic;

/* Create "<dir>/.<base>.tmp-XXXXXX" beside path and open it for writing. */
int qc_atomic_open(qc_atomic *a, const char *path);
/* fsync-free flush, rename to the final name; closes the fd. */
int qc_atomic_commit(qc_atomic *a);
/* Close and unlink the temporary file. Safe to call after commit (no-op). */
void qc_atomic_abort(qc_atomic *a);

/* Write a whole buffer to path atomically. */
int qc_write_file_atomic(const char *path, const void *data, size_t len);

/* ---- paths ---- */
/* 1 when name is a plain relative file name safe to join to a directory:
 * not empty, no '/' or '\\', not "." or "..", no NUL or control bytes. */
int qc_safe_filename(const char *name);
/* mkdir -p; 0 or QC_EIO. */
int qc_mkdirs(const char *path, int mode);
/* rm -rf of a directory tree we created (refuses "/" and ""). */
int qc_rmtree(const char *path);
/* Join dir and name into a malloc'd string (NULL on out of memory). */
char *qc_path_join(const char *dir, const char *name);
/* 1 if path names an existing directory. */
int qc_is_dir(const char *path);

#endif
