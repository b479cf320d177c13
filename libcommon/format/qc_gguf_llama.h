/*
 * qc_gguf_llama.h - a Llama GGUF file (what qpack -f gguf writes, or
 * llama.cpp's converter, in the types qc_ggml.h decodes) read back in
 * HuggingFace terms, so that the runtime and qverify treat it like any
 * other artifact.
 *
 * The config is rebuilt from the metadata (general.architecture "llama";
 * llama.* hyperparameters, rope settings, the embedding's dtype as
 * torch_dtype; tied when there is no output.weight). Llama-3 rope scaling
 * is stored only as rope_freqs' factors: the parameters are recovered as
 * factor = the last factor, low_freq_factor 1, high_freq_factor 4 and the
 * original context length that reproduces every factor exactly
 * (qc_gguf_rope_factors); factors no such setting reproduces are
 * QC_EUNSUPPORTED.
 *
 * Tensors come through a qc_wsrc under their HF names, in HF shapes:
 * F32/F16/BF16 tensors as views into the mapping (dtype kept), everything
 * else dequantized to F32 (qc_ggml_dequantize), and attn_q/attn_k rows put
 * back from llama.cpp's rope order (the inverse of qc_gguf_pack.h's
 * permutation; converted to F32 when permuted). A dequantized tensor lives
 * until its last release (gets are counted).
 *
 * Threads: one thread at a time per handle.
 */
#ifndef QC_GGUF_LLAMA_H
#define QC_GGUF_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "qc_config.h"
#include "qc_ctq.h"

/* 1 when path is a regular file that starts with the GGUF magic. */
int qc_gguf_is_file(const char *path);

typedef struct qc_gguf_llama qc_gguf_llama;

/* Open and check (qc_gguf_open's checks, then: architecture llama, every
 * hyperparameter present with llama.cpp's types, tensors of the shapes the
 * config implies; QC_EFORMAT names what is wrong). */
int qc_gguf_llama_open(qc_gguf_llama **out, const char *path);
void qc_gguf_llama_close(qc_gguf_llama *g);          /* NULL is a no-op */

const qc_config *qc_gguf_llama_config(const qc_gguf_llama *g);
const qc_wsrc *qc_gguf_llama_wsrc(qc_gguf_llama *g);
/* HF names of the tensors the file holds (rope_freqs excluded: it is part
 * of the config); a tensor with a name llama's layout does not have keeps
 * its GGUF name, so a caller can report it. */
void qc_gguf_llama_names(const qc_gguf_llama *g, const char *const **names, size_t *n);
/* "Q4_0", ... : the type of the first quantized Linear, or "F16"/"BF16"/
 * "F32" when none is quantized. */
const char *qc_gguf_llama_weight_type(const qc_gguf_llama *g);

/* llama.cpp's rope_freqs for Llama-3 scaling: head_dim / 2 factors,
 * computed in float as convert_hf_to_gguf.py does in float32 torch (1 for
 * wavelengths under orig_ctx / high, factor over orig_ctx / low, between
 * them 1 / ((1 - s) / factor + s), s = (orig_ctx / wavelength - low) /
 * (high - low)). */
void qc_gguf_rope_factors(double theta, int64_t head_dim, double factor, double low,
                          double high, int64_t orig_ctx, float *out);

#endif
