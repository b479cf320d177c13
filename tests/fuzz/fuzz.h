/*
 * fuzz.h - helpers shared by the libFuzzer targets of tests/fuzz (README).
 *
 * Every target is one LLVMFuzzerTestOneInput over one parser of libcommon:
 * the parser must return 0 or a QC_E* code for any bytes, never crash, leak,
 * hang or read out of bounds (AddressSanitizer and UBSan watch). Inputs that
 * carry two documents (a config.json and a safetensors image) are split at
 * the first FUZZ_SEP line, so the mutator can change either.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_st.h"

#define FUZZ_SEP "\n--qc-fuzz--\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Split data at the first FUZZ_SEP: a = [0, *alen), b = the rest (empty
 * when there is no separator). */
static inline void fuzz_split(const uint8_t *data, size_t size, size_t *alen, const uint8_t **b,
                              size_t *blen)
{
	size_t sl = strlen(FUZZ_SEP);
	const uint8_t *p = size >= sl ? memmem(data, size, FUZZ_SEP, sl) : NULL;
	if (!p) {
		*alen = size;
		*b = data + size;
		*blen = 0;
		return;
	}
	*alen = (size_t)(p - data);
	*b = p + sl;
	*blen = size - *alen - sl;
}

/* A malloc'd NUL-terminated copy (parsers that take C strings). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = 0;
	return s;
}

/* config.json FUZZ_SEP image: the parsed config (NULL when it is not JSON)
 * and the image's bytes. */
#include <jansson.h>
static inline json_t *fuzz_config_image(const uint8_t *data, size_t size, const uint8_t **img,
                                        size_t *ilen)
{
	size_t cl;
	fuzz_split(data, size, &cl, img, ilen);
	return json_loadb((const char *)data, cl, 0, NULL);
}

/* When name is "<module><stem>" for one of the n stems (".weight", ...),
 * the module into module[200] and 1; else 0. */
static inline int fuzz_module_of(const char *name, const char *const *stems, size_t n,
                                 char module[200])
{
	const char *dot = strrchr(name, '.');
	if (!dot || (size_t)(dot - name) >= 200)
		return 0;
	for (size_t k = 0; k < n; k++)
		if (strcmp(dot, stems[k]) == 0) {
			memcpy(module, name, (size_t)(dot - name));
			module[dot - name] = 0;
			return 1;
		}
	return 0;
}

/* A weight source over the tensors of one safetensors reader. */
static int fuzz_st_get(void *ctx, const char *name, const qc_tensor **t)
{
	const qc_tensor *v = qc_st_find(ctx, name);
	if (!v)
		return qc_seterr(QC_ENOTFOUND, "no tensor '%s'", name);
	*t = v;
	return 0;
}

static inline qc_wsrc fuzz_st_wsrc(qc_st *st)
{
	qc_wsrc w = {st, fuzz_st_get, NULL};
	return w;
}

#endif

/* ---- streams: the bytes as a file the readers open by path ---- */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* A memory file holding data; its path ("/proc/self/fd/N") in path. Returns
 * the descriptor (close it when done). */
static inline int fuzz_memfile(const void *data, size_t size, char path[64])
{
	int fd = memfd_create("qc-fuzz", 0);
	if (fd < 0)
		abort();
	const uint8_t *p = data;
	while (size) {
		ssize_t w = write(fd, p, size);
		if (w <= 0)
			abort();
		p += w;
		size -= (size_t)w;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}
