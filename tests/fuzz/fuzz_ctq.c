/* fuzz_ctq.c - compressed-tensors quantization_config in config.json (the
 * scheme, its groups, ignore regexes, activation settings) and the stored
 * tensors of each Linear it describes. Input: config.json FUZZ_SEP a
 * safetensors image holding the Linears. */
#include <jansson.h>

#include "fuzz.h"
#include "qc_packfmt.h"

/* Linears in the image: the prefix of every "<m>.weight" or
 * "<m>.weight_packed", with [out, in] guessed from the stored shape. */
static void linears(const qc_ctq *q, qc_st *st)
{
	static const char *const stems[] = {".weight", ".weight_packed"};
	qc_wsrc src = fuzz_st_wsrc(st);
	for (size_t i = 0; i < qc_st_count(st); i++) {
		const qc_tensor *t = qc_st_at(st, i);
		char module[200];
		if (t->ndim != 2 || !fuzz_module_of(t->name, stems, 2, module))
			continue;
		for (int64_t f = 1; f <= 8; f *= 2) {
			qc_ctq_linear L;
			memset(&L, 0, sizeof L);
			if (qc_ctq_linear_get(&L, q, &src, module, t->shape[0], t->shape[1] * f) == 0)
				qc_ctq_linear_check(&L);
			qc_ctq_linear_release(&L);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t sl;
	const uint8_t *img;
	json_t *config = fuzz_config_image(data, size, &img, &sl);
	if (!config)
		return 0;
	qc_ctq *q = NULL;
	if (qc_ctq_from_config(&q, config) == 0 && q) {
		static const char *const mods[] = {"lm_head", "model.layers.0.self_attn.q_proj",
		                                   "model.layers.1.mlp.down_proj", ""};
		for (size_t i = 0; i < sizeof mods / sizeof *mods; i++)
			qc_ctq_quantized(q, mods[i]);
		qk_actq a;
		qc_ctq_actq(q, 0.5f, 0, &a);
		qc_st *st = NULL;
		if (sl && qc_st_open_mem(&st, (void *)img, sl, 0, "fuzz.safetensors") == 0) {
			linears(q, st);
			qc_st_close(st);
		}
	}
	qc_ctq_free(q);
	/* the packed formats' detection reads the same block */
	qc_pack_spec spec;
	json_t *naive = NULL;
	qc_pack_detect(config, &spec, &naive);
	json_decref(naive);
	json_decref(config);
	return 0;
}
