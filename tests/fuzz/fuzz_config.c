/* fuzz_config.c - config.json: parsing, validation and the dump back. */
#include "fuzz.h"
#include "qc_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qc_config cfg;
	if (qc_config_parse(&cfg, data, size, "config.json") == 0) {
		char *out = NULL;
		size_t len;
		if (qc_config_dump(&cfg, &out, &len) == 0) {
			/* what we write must read back */
			qc_config again;
			if (qc_config_parse(&again, out, len, "dump") != 0)
				abort();
			qc_config_free(&again);
		}
		free(out);
		qc_config_free(&cfg);
	}
	return 0;
}
