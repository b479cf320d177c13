/*
 * tmodel.h - small Llama/Mistral/Gemma models held in memory for the runtime's tests, and
 * an independent double-precision reference of the forward pass written
 * with plain loops (it shares no code with libcommon's model or kernels).
 *
 * A tm_model owns a table of named tensors (HF names, little-endian data)
 * and exposes it as a qc_wsrc. Tests may add, replace or remove tensors
 * (e.g. to store a Linear as compressed-tensors codes).
 */
#ifndef TMODEL_H
#define TMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "qc_config.h"
#include "qc_ctq.h"
#include "qc_dtype.h"

typedef struct tm_model {
	qc_config cfg;
	qc_tensor *t;
	size_t n, cap;
	qc_wsrc src;
	int gets, releases;       /* counters: every get must be released */
} tm_model;

/* A config with the given shape (silu, eps 1e-5, theta 10000, no scaling). */
void tm_config(qc_config *c, int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
               int64_t kv_heads, int64_t head_dim, int64_t vocab, int tied);

/* Turn c (from tm_config) into a Gemma (v2 0) or Gemma 2 (v2 1) model of
 * the same shape, as qc_config_parse reads those families: (1 + w) norms,
 * scaled embeddings, the tanh GELU; Gemma 2 also the sandwich norms,
 * query_pre_attn_scalar qpas (0: head_dim), soft-capping 50 / 30 and a
 * sliding window of `window` tokens on the even layers (0: none). */
void tm_config_gemma(qc_config *c, int v2, double qpas, int64_t window);

/* Random weights in dtype dt (F32, F16 or BF16) for cfg, deterministic from
 * seed: Linear weights N(0, 1/in), norms 1 + 0.1 N(0,1), embeddings and
 * lm_head N(0, 6.25/hidden) (logits with a standard deviation near 2.5),
 * biases N(0, 0.01) when the config has them. */
void tm_make(tm_model *m, const qc_config *cfg, qc_dtype dt, uint64_t seed);
void tm_free(tm_model *m);

const qc_tensor *tm_find(const tm_model *m, const char *name);
/* Add (or replace) a tensor; data is copied. */
void tm_put(tm_model *m, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
            const void *data);
void tm_remove(tm_model *m, const char *name);
/* Tensor values as doubles (F32, F16, BF16), malloc'd. */
double *tm_values(const qc_tensor *t);

/* Activation quantization the reference applies to each Linear's input
 * (NULL: none); indexed by qc_linear. */
typedef struct tm_actq {
	int kind;      /* qk_actq_kind */
	float scale;
	int zp;
} tm_actq;

/*
 * Reference logits [T, vocab] (double) for packed sequences ids [T] with
 * lens [nseq], from the equations of transformers' modeling_llama,
 * modeling_mistral (sliding window), modeling_gemma ((1 + w) norms,
 * embeddings times sqrt(hidden) in the model's dtype, tanh GELU) and
 * modeling_gemma2 (sandwich norms, query_pre_attn_scalar, attention and
 * final logit soft-capping, sliding window on the even layers), as the
 * config's fields say. Weights are read from the table: dense tensors directly;
 * if wdeq is not NULL it supplies the weight of Linear l of layer i instead
 * (wdeq(ctx, i, l) returns a malloc'd double [out, in] that the reference
 * frees). act (may be NULL) quantizes Linear inputs.
 */
typedef double *(*tm_weight_fn)(void *ctx, int layer, int lin);
void tm_ref_logits(const tm_model *m, const int32_t *ids, const int64_t *lens, int64_t nseq,
                   const tm_actq *act, tm_weight_fn wdeq, void *wctx, double *logits);

/*
 * A small round-to-nearest writer, independent of libcommon's quantizer:
 * replaces every Linear weight of the decoder layers by compressed-tensors
 * tensors (doc/formats.md 1.2-1.5): codes (I8, or F8_E4M3 for float; I32 words
 * when packed), weight_scale in scale_dt, weight_zero_point when
 * asymmetric (I8, or I32 packed along the output dimension when packed),
 * weight_shape when packed. The weights must be F32.
 */
typedef struct tm_qspec {
	int bits;          /* 4 or 8 */
	int is_float;      /* fp8 E4M3 */
	int strategy;      /* 0 tensor, 1 channel, 2 group */
	int64_t group;
	int symmetric;
	qc_dtype scale_dt; /* BF16 or F32 */
	int packed;        /* pack-quantized layout */
} tm_qspec;

void tm_quantize(tm_model *m, const tm_qspec *q);
/* The dequantized weight of Linear `lin` of `layer` read back from the
 * stored tensors: (q - z) * s in double, [out, in] malloc'd; usable as a
 * tm_weight_fn with ctx = the tm_qspec. */
double *tm_dequant(void *qspec_and_model, int layer, int lin);
typedef struct tm_qref {
	const tm_model *m;
	const tm_qspec *q;
} tm_qref;

/* E4M3 byte of a value already clamped to [-448, 448] (nearest, ties to
 * even) and back */
uint8_t tm_e4m3(float v);
float tm_e4m3_value(uint8_t b);

/* max |a - b| / max |b| over n values */
double tm_relerr(const float *a, const double *b, size_t n);

#endif
