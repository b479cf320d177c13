/* fuzz_st.c - safetensors: the header (lengths, JSON, dtypes, shapes) and the
 * data ranges, through the whole-image reader and the header-only reader. */
#include "fuzz.h"
#include "qc_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	qc_st *st = NULL;
	if (qc_st_open_mem(&st, buf, size, 1, "fuzz.safetensors") == 0) {
		/* every view must lie inside the image */
		uint64_t sum = 0;
		for (size_t i = 0; i < qc_st_count(st); i++) {
			const qc_tensor *t = qc_st_at(st, i);
			if (t->nbytes)
				sum += ((const uint8_t *)t->data)[t->nbytes - 1];
			if (qc_st_find(st, t->name) != t)
				abort();
		}
		for (size_t i = 0; i < qc_st_meta_count(st); i++) {
			const char *k, *v;
			qc_st_meta_at(st, i, &k, &v);
			sum += strlen(k) + strlen(v);
		}
		(void)sum;
		qc_st_close(st);
	}
	/* the stream path: the prefix first, then the header alone */
	uint64_t n;
	if (size >= 8 && qc_st_check_prefix(data, size, &n) == 0 && n <= size - 8) {
		st = NULL;
		if (qc_st_open_header(&st, data + 8, (size_t)n, size, "fuzz.safetensors") == 0) {
			for (size_t i = 0; i < qc_st_count(st); i++)
				if (qc_st_offset(st, i) + qc_st_at(st, i)->nbytes > size)
					abort();
			qc_st_close(st);
		}
	}
	return 0;
}
