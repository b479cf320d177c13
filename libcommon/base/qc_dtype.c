/* qc_dtype.c - dtype table (see qc_dtype.h). */
#include "qc_dtype.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int bits;
	int is_float;
} dtypes[QC_DT_COUNT] = {
	[QC_DT_INVALID] = { "INVALID", 0, 0 },
	[QC_DT_BOOL] = { "BOOL", 8, 0 },
	[QC_DT_U8] = { "U8", 8, 0 },
	[QC_DT_I8] = { "I8", 8, 0 },
	[QC_DT_U16] = { "U16", 16, 0 },
	[QC_DT_I16] = { "I16", 16, 0 },
	[QC_DT_F16] = { "F16", 16, 1 },
	[QC_DT_BF16] = { "BF16", 16, 1 },
	[QC_DT_U32] = { "U32", 32, 0 },
	[QC_DT_I32] = { "I32", 32, 0 },
	[QC_DT_F32] = { "F32", 32, 1 },
	[QC_DT_U64] = { "U64", 64, 0 },
	[QC_DT_I64] = { "I64", 64, 0 },
	[QC_DT_F64] = { "F64", 64, 1 },
	[QC_DT_C64] = { "C64", 64, 0 },
	[QC_DT_F8_E4M3] = { "F8_E4M3", 8, 1 },
	[QC_DT_F8_E5M2] = { "F8_E5M2", 8, 0 },
	[QC_DT_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8, 0 },
	[QC_DT_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8, 0 },
	[QC_DT_F8_E8M0] = { "F8_E8M0", 8, 0 },
	[QC_DT_F6_E2M3] = { "F6_E2M3", 6, 0 },
	[QC_DT_F6_E3M2] = { "F6_E3M2", 6, 0 },
	[QC_DT_F4] = { "F4", 4, 0 },
};

int qc_dtype_bits(qc_dtype dt)
{
	return (unsigned)dt < QC_DT_COUNT ? dtypes[dt].bits : 0;
}

size_t qc_dtype_size(qc_dtype dt)
{
	int b = qc_dtype_bits(dt);
	return b % 8 ? 0 : (size_t)b / 8;
}

const char *qc_dtype_name(qc_dtype dt)
{
	return (unsigned)dt < QC_DT_COUNT ? dtypes[dt].name : "INVALID";
}

qc_dtype qc_dtype_from_name(const char *name)
{
	for (int i = 1; i < QC_DT_COUNT; i++)
		if (strcmp(name, dtypes[i].name) == 0)
			return (qc_dtype)i;
	return QC_DT_INVALID;
}

int qc_dtype_is_float(qc_dtype dt)
{
	return (unsigned)dt < QC_DT_COUNT && dtypes[dt].is_float;
}

int64_t qc_numel(int ndim, const int64_t *shape)
{
	int64_t n = 1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return -1;
		if (shape[i] != 0 && n > INT64_MAX / shape[i])
			return -1;
		n *= shape[i];
	}
	return n;
}

int64_t qc_nbytes(qc_dtype dt, int64_t numel)
{
	int bits = qc_dtype_bits(dt);
	if (bits == 0 || numel < 0 || numel > INT64_MAX / bits)
		return -1;
	int64_t b = numel * bits;
	return b % 8 ? -1 : b / 8;
}

const char *qc_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t off = 0;
	if (n == 0)
		return buf;
	buf[0] = 0;
	off += (size_t)snprintf(buf + off, n - off, "[");
	for (int i = 0; i < ndim && off < n; i++)
		off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)shape[i]);
	if (off < n)
		snprintf(buf + off, n - off, "]");
	return buf;
}
