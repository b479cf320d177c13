/*
 * qc_st.h - safetensors files: a validating reader and a streaming writer.
 *
 * Format (huggingface/safetensors README, tensor.rs): u64 little-endian
 * header length N, then N bytes of JSON, then the data buffer. The JSON maps
 * tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the data buffer, end exclusive) plus an optional
 * "__metadata__" map of string to string.
 *
 * The reader validates the whole header before any tensor is handed out:
 *   - file at least 8 bytes; 2 <= N <= 100,000,000 and 8 + N <= file size;
 *   - JSON is an object, valid UTF-8, no duplicate keys; trailing spaces ok;
 *   - every entry has exactly dtype, shape, data_offsets; dtype known;
 *     shape a list of non-negative integers (at most QC_MAX_DIMS);
 *   - numel * bits / 8 computed without overflow and equal to end - begin;
 *   - sorted by offset the ranges start at 0 and are contiguous (no gap, no
 *     overlap) and 8 + N + last end equals the file size exactly;
 *   - __metadata__, if present, maps strings to strings only.
 * A failure is QC_EFORMAT with a message naming the file and the tensor.
 * Every view handed out is aligned to its element size (at most 8): the
 * tensors of a file laid out without that alignment (legal, if rare: a
 * header length that is not a multiple of 8) are copied once, at open.
 *
 * The writer lays the file out before writing a byte (so the total size is
 * known, which tar headers need), then streams header and data to a sink.
 * Tensors are ordered by element alignment (largest first, in the order of
 * the Rust Dtype enum) then name, the JSON is compact with the keys in the
 * Rust order ("__metadata__" first, keys sorted; then per tensor dtype, shape,
 * data_offsets) and padded with spaces to a multiple of 8, so every tensor's
 * data is naturally aligned and the bytes equal what safetensors'
 * serialize() writes for the same tensors.
 *
 * Ownership: a qc_st owns its tensor names and metadata strings; views and
 * strings it returns live until qc_st_close. One qc_st may be read from
 * several threads at once (nothing mutates after open).
 */
#ifndef QC_ST_H
#define QC_ST_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"
#include "qc_io.h"

#define QC_ST_MAX_HEADER 100000000u

/* ---- reader ---- */
typedef struct qc_st qc_st;

/* mmap path read-only and validate it. */
int qc_st_open(qc_st **out, const char *path);
/* Validate an in-memory file image of len bytes. With own != 0 the reader
 * takes buf and free()s it on close (also when validation fails). name is
 * used in messages (copied). */
int qc_st_open_mem(qc_st **out, void *buf, size_t len, int own, const char *name);
/* Like qc_st_open_mem, but the buffer is a file image that this reader must
 * qc_unmap() on close. */
int qc_st_open_mapped(qc_st **out, const void *map, size_t len, const char *name);
void qc_st_close(qc_st *st);                    /* NULL is a no-op */

const char *qc_st_name(const qc_st *st);
size_t qc_st_count(const qc_st *st);
/* i-th tensor in data order (by offset); views live until qc_st_close. */
const qc_tensor *qc_st_at(const qc_st *st, size_t i);
/* Tensor by name, or NULL. */
const qc_tensor *qc_st_find(const qc_st *st, const char *name);
/* __metadata__ value for key, or NULL. */
const char *qc_st_meta(const qc_st *st, const char *key);
size_t qc_st_meta_count(const qc_st *st);
void qc_st_meta_at(const qc_st *st, size_t i, const char **key, const char **value);
/* Size of the whole file image and of its header (8 + N). */
uint64_t qc_st_file_size(const qc_st *st);
uint64_t qc_st_header_size(const qc_st *st);

/* Validate only the first bytes of a file: given the 8-byte prefix and the
 * total file size, return N (header length) or QC_EFORMAT. Used by stream
 * readers before they allocate. */
int qc_st_check_prefix(const unsigned char prefix[8], uint64_t file_size, uint64_t *header_len);

/* Validate a header alone, before the data has been read (streams): json is
 * the N header bytes that follow the 8-byte prefix, file_size the size of the
 * whole file. Every check above is made (including that the data ends exactly
 * at file_size), with the messages qc_st_open gives; a length n that cannot
 * fit is refused before json is read (json may then be NULL). The tensor
 * views have data == NULL. Used to decide where a
 * shard goes (memory, spill, a copy) before reading its data. */
int qc_st_open_header(qc_st **out, const void *json, size_t n, uint64_t file_size,
                      const char *name);
/* Offset of the i-th tensor's data (data order) from the start of the file. */
uint64_t qc_st_offset(const qc_st *st, size_t i);

/* ---- writer ---- */
typedef struct qc_st_writer qc_st_writer;

qc_st_writer *qc_st_writer_new(void);           /* NULL on out of memory */
void qc_st_writer_free(qc_st_writer *w);        /* NULL is a no-op; frees owned data */

/* Add a metadata pair (both copied). Writers in this toolkit always set
 * "format": "pt", which transformers requires. */
int qc_st_writer_meta(qc_st_writer *w, const char *key, const char *value);

/* Declare a tensor. name is copied; data must hold exactly the shape's byte
 * size (it may be NULL for an empty tensor). With own != 0 the writer takes
 * data at once, also when the call fails (it is then freed immediately), and
 * free()s it when the writer is freed; otherwise the caller keeps data alive
 * until qc_st_writer_emit returns. Duplicate names, "__metadata__", names that
 * are not UTF-8, negative dimensions, more than QC_MAX_DIMS dimensions and
 * sizes that overflow are QC_EINVAL. */
int qc_st_writer_add(qc_st_writer *w, const char *name, qc_dtype dt, int ndim,
                     const int64_t *shape, const void *data, int own);

/* Declare a tensor without its data (same checks as qc_st_writer_add): a
 * writer of declarations only lays a file out (offsets, the header) for a
 * caller that writes the data itself; emit and save refuse it. */
int qc_st_writer_declare(qc_st_writer *w, const char *name, qc_dtype dt, int ndim,
                         const int64_t *shape);

/* Fix the layout (idempotent; adding after it is QC_EINVAL) and return the
 * byte size of the file that emit will produce. */
int qc_st_writer_layout(qc_st_writer *w, uint64_t *file_size);
size_t qc_st_writer_count(const qc_st_writer *w);
/* Tensors in layout (file) order, valid after layout. */
const qc_tensor *qc_st_writer_at(const qc_st_writer *w, size_t i);

/* The first bytes of the file: the 8-byte little-endian header length and
 * the header (JSON padded with spaces to a multiple of 8), owned by w. Calls
 * layout if needed. The data of the i-th tensor in layout order starts at
 * 8 + header_len + the sizes of the tensors before it. */
int qc_st_writer_head(qc_st_writer *w, unsigned char prefix[8], const char **header,
                      size_t *header_len);

/* Write the whole file image (header, then every tensor's data in layout
 * order) to a sink. Calls layout if needed. */
int qc_st_writer_emit(qc_st_writer *w, qc_sink *sink);

/* Emit to path through a temporary file and a rename. */
int qc_st_writer_save(qc_st_writer *w, const char *path);

#endif
