/*
 * qc_pack.h - the whole-checkpoint packer behind qpack: a naive-quantized
 * checkpoint (quant/qc_qout.h) in, a release artifact in one of the packed
 * layouts of format/qc_packfmt.h out, sharded, with its model card and
 * manifest.
 */
#ifndef QC_PACK_H
#define QC_PACK_H

#include <stdint.h>

#include "qc_packfmt.h"

typedef struct qc_pack_opts {
	const char *input;        /* naive-quantized checkpoint: directory, tar, "-" */
	const char *output;       /* directory or "-" */
	qc_pack_format format;
	uint64_t max_shard_size;  /* tensor bytes per shard; 0 = 5 GB (5e9, as HF) */
	int force;                /* replace an existing output directory */
	int threads;              /* packing threads (0: 2) */
	const char *tool;         /* manifest history entry */
	const char *version;
	int argc;
	char *const *argv;
	uint64_t stream_mem_limit;/* qc_ckpt_opts for stream inputs (0: default) */
	/* progress (may be NULL): called after each decoder layer */
	void (*progress)(void *ctx, int done, int total);
	void *progress_ctx;
} qc_pack_opts;

typedef struct qc_pack_result {
	int n_shards;
	int64_t linears;          /* quantized Linears packed */
	uint64_t tensor_bytes;    /* total_size of the output */
	char format[32];          /* what config.json says: "pack-quantized", "gptq", ... */
} qc_pack_result;

/*
 * Read a naive-quantized checkpoint and write it in o->format
 * (doc/design.md 3.3, doc/formats.md):
 *   - shards: HF names, greedy fill in layer order up to max_shard_size
 *     (tensor bytes); a quantized Linear's tensors stay in one shard; a
 *     Linear or tensor larger than the limit gets a shard of its own. The
 *     plan is made before writing (the writer needs the count): from the
 *     shard headers of a directory; for a stream, from its embeddings and
 *     first layer: each later layer holds the first layer's other tensors
 *     (norms, biases) and its Linears quantized or dense as the scheme says,
 *     stored as the first layer stores them; the last group holds
 *     model.norm.weight and, untied, lm_head (checked as each arrives: a
 *     stream that breaks this is QC_EFORMAT naming the tensor and
 *     suggesting to pass the directory).
 *   - config.json with the format's quantization_config (qc_pack_qconfig);
 *     GPTQ also gets quantize_config.json (the same object), which AutoGPTQ
 *     reads; every other small file of the input is carried (tokenizer
 *     files, generation_config.json, quant_report.jsonl), and quant_card.md
 *     (qc_card.h) is written anew.
 *   - the manifest: the writer's hashes, the input's history, base and token
 *     sets (inherited), and this run's history entry.
 * Embeddings, norms, lm_head, biases and ignored Linears are copied as
 * they are (their dtype is kept: a BF16 model stays BF16 outside the
 * quantized weights). Memory: one output shard's packed tensors, plus for
 * a stream the input tensors of that shard.
 * Everything that can be refused from config.json and the tensor shapes is
 * refused before the output exists; a failure later removes the partial
 * output. Returns 0, QC_EUNSUPPORTED (the format cannot express the
 * input), QC_EFORMAT (malformed input), QC_EIO, ...
 */
int qc_pack_checkpoint(const qc_pack_opts *o, qc_pack_result *res);

#endif
