/* fuzz_manifest.c - quant_manifest.json: parse, and serialize what parsed. */
#include "fuzz.h"
#include "qc_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qc_manifest *m = NULL;
	if (qc_manifest_parse(&m, data, size) == 0) {
		char *json = NULL, fp[33];
		size_t len;
		if (qc_manifest_to_json(m, &json, &len) == 0) {
			qc_manifest *again = NULL;
			if (qc_manifest_parse(&again, json, len) != 0)
				abort();
			qc_manifest_free(again);
		}
		free(json);
		qc_manifest_fingerprint(m, fp);
		for (size_t i = 0; i < qc_manifest_history_count(m); i++) {
			int argc;
			char *const *argv;
			qc_manifest_history_argv(m, i, &argc, &argv);
		}
		qc_manifest_free(m);
	}
	return 0;
}
