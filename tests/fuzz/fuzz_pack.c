/* fuzz_pack.c - the packed layouts qpack's view decodes (GPTQ v1/v2, AWQ
 * GEMM, compressed-tensors pack-quantized and naive): the config picks the
 * format, every Linear of the image is unpacked and dequantized. Input:
 * config.json FUZZ_SEP a safetensors image of the packed Linears. */
#include <jansson.h>

#include "fuzz.h"
#include "qc_packfmt.h"

static const char *const stems[] = {".qweight", ".weight_packed", ".weight"};

static void unpack_all(const qc_pack_spec *spec, qc_st *st)
{
	qc_wsrc src = fuzz_st_wsrc(st);
	for (size_t i = 0; i < qc_st_count(st); i++) {
		char module[200];
		if (!fuzz_module_of(qc_st_at(st, i)->name, stems, sizeof stems / sizeof *stems, module))
			continue;
		qc_pack_unpacked u;
		memset(&u, 0, sizeof u);
		if (qc_unpack_linear(spec, &src, module, 0, 0, &u) == 0 && u.in > 0 &&
		    u.out <= ((int64_t)1 << 22) / u.in) {
			float *w = malloc((size_t)(u.out * u.in) * sizeof *w + 1);
			if (!w)
				abort();
			qc_pack_unpacked_rows(&u, 0, u.out, w);
			free(w);
		}
		qc_pack_unpacked_free(&u);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t sl;
	const uint8_t *img;
	json_t *config = fuzz_config_image(data, size, &img, &sl);
	if (!config)
		return 0;
	qc_pack_spec spec;
	json_t *naive = NULL;
	qc_st *st = NULL;
	if (qc_pack_detect(config, &spec, &naive) == 1 && sl &&
	    qc_st_open_mem(&st, (void *)img, sl, 0, "fuzz.safetensors") == 0) {
		unpack_all(&spec, st);
		qc_st_close(st);
	}
	json_decref(naive);
	json_decref(config);
	return 0;
}
