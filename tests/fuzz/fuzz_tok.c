/* fuzz_tok.c - tokenizer.json (and tokenizer_config.json) loading, then the
 * encoding of fuzzed text and the decoding of what it gave. Input:
 * tokenizer.json FUZZ_SEP tokenizer_config.json FUZZ_SEP text. */
#include "fuzz.h"
#include "qc_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t jl, rl, cl, tl;
	const uint8_t *rest, *text;
	fuzz_split(data, size, &jl, &rest, &rl);
	fuzz_split(rest, rl, &cl, &text, &tl);
	qc_tok *t = NULL;
	if (qc_tok_load_mem(&t, (const char *)data, jl, cl ? (const char *)rest : NULL, cl,
	                    "fuzz") != 0)
		return 0;
	qc_ids ids = {0};
	if (qc_tok_encode(t, (const char *)text, tl, QC_TOK_ADD_SPECIAL, &ids) == 0) {
		char *back = NULL;
		size_t bl;
		for (size_t i = 0; i < ids.n; i++)
			if (ids.v[i] < 0 || ids.v[i] >= qc_tok_vocab_size(t))
				abort();
		if (qc_tok_decode(t, ids.v, ids.n, 0, &back, &bl) == 0)
			free(back);
	}
	qc_ids_release(&ids);
	qc_tok_free(t);
	return 0;
}
