/* fuzz_tokset.c - token set files (a safetensors image with their rules). */
#include "fuzz.h"
#include "qc_tokset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qc_tokset *ts = NULL;
	if (qc_tokset_open_mem(&ts, data, size, "fuzz.st") == 0) {
		int64_t sum = 0;
		for (int64_t i = 0; i < qc_tokset_rows(ts); i++) {
			int32_t len;
			const int32_t *row = qc_tokset_row(ts, i, &len);
			for (int32_t j = 0; j < len; j++)
				sum += row[j];
		}
		(void)sum;
		qc_tokset_hash(ts);
		qc_tokset_close(ts);
	}
	return 0;
}
