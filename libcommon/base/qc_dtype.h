/*
 * qc_dtype.h - element types and the plain tensor view shared by all modules.
 *
 * Names are the safetensors spellings ("BF16", "F8_E4M3"). A qc_tensor is a
 * non-owning view: its data and name belong to whoever returned it (a
 * safetensors file, a checkpoint reader) and stay valid for as long as that
 * owner documents. Shapes are row-major, outermost first, as in PyTorch: a
 * Linear weight is [out_features, in_features].
 */
#ifndef QC_DTYPE_H
#define QC_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
	QC_DT_INVALID = 0,
	QC_DT_BOOL,
	QC_DT_U8,
	QC_DT_I8,
	QC_DT_U16,
	QC_DT_I16,
	QC_DT_F16,
	QC_DT_BF16,
	QC_DT_U32,
	QC_DT_I32,
	QC_DT_F32,
	QC_DT_U64,
	QC_DT_I64,
	QC_DT_F64,
	QC_DT_C64,
	QC_DT_F8_E4M3,     /* E4M3FN: no infinities, max 448, S.1111.111 = NaN */
	QC_DT_F8_E5M2,
	QC_DT_F8_E4M3FNUZ,
	QC_DT_F8_E5M2FNUZ,
	QC_DT_F8_E8M0,
	QC_DT_F6_E2M3,     /* sub-byte types: known so headers validate, */
	QC_DT_F6_E3M2,     /* but no conversions are offered for them    */
	QC_DT_F4,
	QC_DT_COUNT
} qc_dtype;

/* Size in bits of one element (4 for F4, 6 for F6_*, 16 for BF16...); 0 for INVALID. */
int qc_dtype_bits(qc_dtype dt);
/* Size in bytes of one element for byte-sized types; 0 for sub-byte types. */
size_t qc_dtype_size(qc_dtype dt);
/* The safetensors name ("BF16"); "INVALID" for unknown values. */
const char *qc_dtype_name(qc_dtype dt);
/* Parse a safetensors name; QC_DT_INVALID when unknown. */
qc_dtype qc_dtype_from_name(const char *name);
/* 1 for F16, BF16, F32, F64 and F8_E4M3 (the types qc_num converts). */
int qc_dtype_is_float(qc_dtype dt);

#define QC_MAX_DIMS 8

typedef struct qc_tensor {
	const char *name;
	qc_dtype dtype;
	int ndim;                    /* 0 for a scalar */
	int64_t shape[QC_MAX_DIMS];
	const void *data;            /* nbytes bytes, little-endian */
	size_t nbytes;
} qc_tensor;

/* Number of elements of a shape; -1 when a dimension is negative or the
 * product overflows int64. A scalar (ndim 0) has one element. */
int64_t qc_numel(int ndim, const int64_t *shape);

/* Byte size of numel elements of dt; -1 on overflow or when numel*bits is
 * not a whole number of bytes. */
int64_t qc_nbytes(qc_dtype dt, int64_t numel);

/* Format a shape as "[4096, 14336]" into buf (always terminated). */
const char *qc_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

#endif
