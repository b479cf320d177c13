/* fuzz_recipe.c - recipe YAML (and llm-compressor recipes): parse, validate,
 * and write the Makefile and each variant's commands. */
#include "fuzz.h"
#include "qc_io.h"
#include "qc_recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	qc_recipe *r = NULL;
	if (qc_recipe_parse(&r, "fuzz/recipe.yaml", (const char *)data, size, 0, NULL) == 0) {
		qc_membuf b = {0};
		qc_sink s;
		qc_sink_membuf(&s, &b, "<mem>");
		qc_recipe_makefile(r, &s);
		for (int i = 0; i < qc_recipe_n_variants(r); i++)
			qc_recipe_commands(r, i, &s);
		qc_membuf_free(&b);
		qc_recipe_free(r);
	}
	return 0;
}
