/* fuzz_index.c - the checkpoint index (model.safetensors.index.json and its
 * weight_map): the fuzzed index goes into a stream of two fixed shards,
 * once before the shards and once after them (both orders are legal). */
#include "fuzz.h"
#include "qc_ckpt.h"
#include "qc_err.h"
#include "qc_tar.h"

static const char *const shard_names[2] = {"model-00001-of-00002.safetensors",
                                           "model-00002-of-00002.safetensors"};
static const char *const tensor_names[2] = {"model.embed_tokens.weight", "model.norm.weight"};

/* A shard of one BF16 [2] tensor. */
static void shard(qc_sink *s, int k)
{
	qc_st_writer *w = qc_st_writer_new();
	int64_t shape[1] = {2};
	uint16_t v[2] = {0x3f80, 0x4000};
	uint64_t size;
	if (!w || qc_st_writer_meta(w, "format", "pt") ||
	    qc_st_writer_add(w, tensor_names[k], QC_DT_BF16, 1, shape, v, 0) ||
	    qc_st_writer_layout(w, &size) || qc_tar_write_header(s, shard_names[k], size) ||
	    qc_st_writer_emit(w, s) || qc_tar_write_pad(s, size))
		abort();
	qc_st_writer_free(w);
}

static void pass(const uint8_t *data, size_t size, int index_first)
{
	static const char config[] = "{\"architectures\": [\"LlamaForCausalLM\"]}\n";
	qc_membuf b = {0};
	qc_sink s;
	qc_sink_membuf(&s, &b, "<mem>");
	if (qc_tar_write_file(&s, "config.json", config, sizeof config - 1))
		abort();
	if (index_first && qc_tar_write_file(&s, "model.safetensors.index.json", data, size))
		abort();
	shard(&s, 0);
	shard(&s, 1);
	if (!index_first && qc_tar_write_file(&s, "model.safetensors.index.json", data, size))
		abort();
	if (qc_tar_write_end(&s))
		abort();
	char path[64];
	int fd = fuzz_memfile(b.data, b.len, path);
	qc_membuf_free(&b);
	qc_ckpt *ck = NULL;
	if (qc_ckpt_open(&ck, path, NULL) == 0) {
		if (qc_ckpt_read_all(ck) == 0) {
			const qc_tensor *t;
			qc_ckpt_get(ck, tensor_names[1], &t);
		}
		qc_ckpt_close(ck);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pass(data, size, 1);
	pass(data, size, 0);
	return 0;
}
