/*
 * qc_gguf.h - the GGUF container (llama.cpp's model file), written and read
 * back: header, metadata key/value pairs, tensor infos, aligned tensor data.
 * The weights' block layouts are qc_ggml.h; what a Llama file holds is
 * pack/qc_gguf_pack.h.
 *
 * Layout (ggml docs/gguf.md, src/gguf.cpp; all little-endian):
 *   "GGUF" (bytes 47 47 55 46), u32 version = 3, u64 tensor_count,
 *   u64 kv_count;
 *   kv_count pairs: key (string), u32 value type, value;
 *   tensor_count infos: name (string), u32 n_dims (1..4), n_dims u64 ne
 *   (ggml order: ne[0] the contiguous axis, so a row-major [out, in]
 *   matrix is ne = {in, out}), u32 ggml type, u64 offset (from the data
 *   start, a multiple of the alignment);
 *   zero padding to the alignment; the data, each tensor padded with zeros
 *   to the alignment.
 *   string = u64 byte length + bytes (no NUL); value types 0 u8, 1 i8,
 *   2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (one byte 0/1), 8 string,
 *   9 array (u32 element type, u64 count, elements), 10 u64, 11 i64, 12 f64.
 *   The alignment is general.alignment (u32, a power of two) or 32.
 *
 * The writer serializes as it is told: keys in the order added (duplicates
 * refused), tensors in the order declared, their data streamed in that
 * order afterwards (the infos need only names, shapes and types, so a whole
 * model never sits in memory). Offsets are assigned back to back, each
 * rounded up to the alignment, as gguf.cpp expects them.
 *
 * The reader checks what gguf.cpp checks on load, and refuses with
 * QC_EFORMAT naming the field: the magic, version 2 or 3, every length
 * within the file, known value types (array nesting at most one level of
 * arrays of arrays refused, as llama.cpp never writes them), no duplicate
 * key or tensor name, names under 64 bytes, 1 to 4 dims each >= 1,
 * ne[0] a multiple of the type's block, a known type (qc_ggml.h's), offsets
 * equal to the running padded sum (so tensors neither overlap nor leave
 * gaps), and the data inside the file.
 */
#ifndef QC_GGUF_H
#define QC_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "qc_io.h"

enum {
	QC_GGUF_U8 = 0, QC_GGUF_I8, QC_GGUF_U16, QC_GGUF_I16, QC_GGUF_U32, QC_GGUF_I32,
	QC_GGUF_F32, QC_GGUF_BOOL, QC_GGUF_STRING, QC_GGUF_ARRAY, QC_GGUF_U64, QC_GGUF_I64,
	QC_GGUF_F64,
};

#define QC_GGUF_DEFAULT_ALIGNMENT 32
#define QC_GGUF_MAX_NAME 63        /* ggml's GGML_MAX_NAME (64) less the NUL */

/* ---------------------------------------------------------------- writing */

typedef struct qc_gguf_w qc_gguf_w;

/* A writer; alignment 0 means 32 (then no general.alignment key is
 * written); another power of two is written as general.alignment. */
int qc_gguf_w_new(qc_gguf_w **w, uint32_t alignment);
void qc_gguf_w_free(qc_gguf_w *w);                 /* NULL is a no-op */

/* Metadata, in the order of the calls. QC_EINVAL for a duplicate key. */
int qc_gguf_w_str(qc_gguf_w *w, const char *key, const char *v);
int qc_gguf_w_u32(qc_gguf_w *w, const char *key, uint32_t v);
int qc_gguf_w_i32(qc_gguf_w *w, const char *key, int32_t v);
int qc_gguf_w_f32(qc_gguf_w *w, const char *key, float v);
int qc_gguf_w_bool(qc_gguf_w *w, const char *key, int v);
/* Arrays: strings (lens NULL: NUL-terminated), i32, f32. */
int qc_gguf_w_arr_str(qc_gguf_w *w, const char *key, const char *const *v, const size_t *lens,
                      size_t n);
int qc_gguf_w_arr_i32(qc_gguf_w *w, const char *key, const int32_t *v, size_t n);
int qc_gguf_w_arr_f32(qc_gguf_w *w, const char *key, const float *v, size_t n);

/* Declare the next tensor: ne in ggml order (ne[0] contiguous), 1..4 dims.
 * QC_EINVAL for a duplicate or too long name, an unknown type, or ne[0]
 * not a multiple of the type's block. */
int qc_gguf_w_tensor(qc_gguf_w *w, const char *name, int type, int ndim, const int64_t *ne);
/* Bytes of declared tensor i (0-based). */
uint64_t qc_gguf_w_tensor_bytes(const qc_gguf_w *w, size_t i);

/* Write the header, metadata, infos and padding to s; then the data of
 * each tensor, in declaration order, in one or more qc_gguf_w_data calls
 * (the writer pads each tensor once its bytes are complete); then end,
 * which checks every tensor was written in full (QC_EINVAL otherwise, as
 * for more bytes than declared). */
int qc_gguf_w_begin(qc_gguf_w *w, qc_sink *s);
int qc_gguf_w_data(qc_gguf_w *w, const void *data, size_t len);
int qc_gguf_w_end(qc_gguf_w *w);

/* ---------------------------------------------------------------- reading */

typedef struct qc_gguf qc_gguf;

typedef struct qc_gguf_tensor {
	const char *name;          /* NUL-terminated copy */
	int type;                  /* ggml type (qc_ggml_type) */
	int ndim;
	int64_t ne[4];             /* ggml order; unused dims 1 */
	uint64_t offset;           /* from the data start */
	uint64_t bytes;
	const void *data;          /* inside the mapping */
} qc_gguf_tensor;

/* Map and check a file (see above), or check a buffer the caller keeps
 * alive (name for messages). */
int qc_gguf_open(qc_gguf **g, const char *path);
int qc_gguf_open_mem(qc_gguf **g, const void *data, size_t len, const char *name);
void qc_gguf_close(qc_gguf *g);                     /* NULL is a no-op */

uint32_t qc_gguf_version(const qc_gguf *g);
uint32_t qc_gguf_alignment(const qc_gguf *g);
uint64_t qc_gguf_data_start(const qc_gguf *g);

size_t qc_gguf_n_kv(const qc_gguf *g);
const char *qc_gguf_key(const qc_gguf *g, size_t i);
/* Index of a key, or -1. */
int64_t qc_gguf_find(const qc_gguf *g, const char *key);
/* The value type of kv i; for arrays also the element type and count. */
int qc_gguf_kv_type(const qc_gguf *g, size_t i);
int qc_gguf_arr_type(const qc_gguf *g, size_t i);
uint64_t qc_gguf_arr_n(const qc_gguf *g, size_t i);
/* Typed getters by key: QC_ENOTFOUND when absent, QC_EFORMAT naming the
 * key when its type differs (as llama.cpp's loader refuses). Strings are
 * pointers into the mapping with their length (not NUL-terminated). */
int qc_gguf_get_u32(const qc_gguf *g, const char *key, uint32_t *v);
int qc_gguf_get_f32(const qc_gguf *g, const char *key, float *v);
int qc_gguf_get_bool(const qc_gguf *g, const char *key, int *v);
int qc_gguf_get_str(const qc_gguf *g, const char *key, const char **s, size_t *len);
/* Element j of an array of strings / i32 / f32 (bounds and types checked). */
int qc_gguf_arr_str(const qc_gguf *g, const char *key, uint64_t j, const char **s, size_t *len);
int qc_gguf_arr_i32(const qc_gguf *g, const char *key, uint64_t j, int32_t *v);
int qc_gguf_arr_f32(const qc_gguf *g, const char *key, uint64_t j, float *v);

size_t qc_gguf_n_tensors(const qc_gguf *g);
const qc_gguf_tensor *qc_gguf_tensor_at(const qc_gguf *g, size_t i);
/* By name, or NULL. */
const qc_gguf_tensor *qc_gguf_tensor_find(const qc_gguf *g, const char *name);

#endif
