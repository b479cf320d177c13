/*
 * qc_tar.h - the tar container of checkpoint streams (doc/design.md 3.2): a
 * deterministic POSIX ustar/pax writer and a strict sequential reader.
 *
 * Format (POSIX.1-2001 pax, "ustar" interchange format): 512-byte blocks.
 * Each member is a header block (name[100] mode[8] uid[8] gid[8] size[12]
 * mtime[12] chksum[8] typeflag name[100]=linkname magic "ustar\0" version
 * "00" uname[32] gname[32] devmajor[8] devminor[8] prefix[155]), then the
 * data padded with zeros to a block boundary. Numbers are octal ASCII; the
 * checksum is the byte sum of the header with the chksum field read as
 * spaces. The archive ends with two zero blocks.
 *
 * Writer: every header is the same for the same (name, size): mode 0644,
 * uid/gid 0, mtime 0, empty uname/gname, so the same checkpoint gives the
 * same stream bytes. Names over 100 bytes and sizes of 8 GiB or more (which
 * do not fit 11 octal digits) get a pax 'x' header first ("path=", "size=")
 * and the ustar size field then holds 0, as GNU tar --format=posix does.
 *
 * Reader: regular file members only. It understands ustar (with prefix),
 * old GNU and v7 headers, pax 'x' records (path, size; other keys are
 * ignored), pax 'g' global headers (validated, ignored), GNU 'L' long names
 * and base-256 sizes. A leading "./" is dropped (what `tar -C dir -c .`
 * writes) and the "./" directory entry is skipped; any other member must be
 * a plain file name (qc_safe_filename: no '/', no "..", not absolute).
 * Failures are QC_EFORMAT with a message naming the stream, the member and
 * the offset: bad checksum, malformed number or pax record, unsafe name,
 * unsupported member type (links, devices, directories), a member cut short,
 * or an archive without both of its end-of-archive blocks (a stream cut
 * between them is cut).
 *
 * Not thread-safe per reader; the source is borrowed, not owned.
 */
#ifndef QC_TAR_H
#define QC_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "qc_io.h"

#define QC_TAR_BLOCK 512

/* ---- writer ---- */
/* Header block(s) of a regular file member (name must be qc_safe_filename;
 * QC_EINVAL otherwise). The caller then writes exactly size bytes of data and
 * qc_tar_write_pad(size). */
int qc_tar_write_header(qc_sink *s, const char *name, uint64_t size);
/* Zeros from the end of size bytes of data to the next block boundary. */
int qc_tar_write_pad(qc_sink *s, uint64_t size);
/* A whole member from memory: header, data, padding. */
int qc_tar_write_file(qc_sink *s, const char *name, const void *data, uint64_t size);
/* The end-of-archive marker: two zero blocks. */
int qc_tar_write_end(qc_sink *s);

/* ---- reader ---- */
typedef struct qc_tar_reader qc_tar_reader;

typedef struct qc_tar_member {
	const char *name;     /* safe file name; valid until the next qc_tar_next */
	uint64_t size;        /* data bytes */
	uint64_t offset;      /* offset of its header in the (decompressed) stream */
} qc_tar_member;

/* A reader over src (borrowed: it must outlive the reader). */
int qc_tar_reader_new(qc_tar_reader **out, qc_source *src);
void qc_tar_reader_free(qc_tar_reader *r);      /* NULL is a no-op */

/* Advance to the next file member, skipping what is left of the current one.
 * Returns 1 with *m filled, 0 at the end of the archive (the rest of the
 * stream is then drained, so that a writer on the other end of a pipe
 * finishes cleanly), or a negative QC_E* code. */
int qc_tar_next(qc_tar_reader *r, qc_tar_member *m);

/* Read the current member's data: up to len bytes, *got < len only at the
 * member's end. A stream that ends inside the member is QC_EFORMAT
 * "tar member 'x' is truncated in 'stream'". */
int qc_tar_read(qc_tar_reader *r, void *buf, size_t len, size_t *got);
/* Exactly len bytes of the current member (QC_EFORMAT if it has fewer). */
int qc_tar_read_full(qc_tar_reader *r, void *buf, size_t len);
/* Bytes of the current member not read yet. */
uint64_t qc_tar_remaining(const qc_tar_reader *r);
/* Name of the stream, for messages. */
const char *qc_tar_stream_name(const qc_tar_reader *r);

#endif
