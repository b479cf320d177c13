/*
 * qc_gguf_pack.h - a naive-quantized Llama checkpoint (quant/qc_qout.h) as
 * one GGUF file that llama.cpp loads unchanged (`qpack -f gguf`), with no
 * second rounding: the codes and scales become ggml blocks exactly
 * (format/qc_ggml.h qc_ggml_from_codes), or the conversion is refused.
 *
 * Quantized Linears: int4 symmetric groups of 32 -> Q4_0, int4 with zero
 * points groups of 32 -> Q4_1, int8 symmetric groups of 32 -> Q8_0 (what
 * `qgptq --group-size 32 --scale-dtype f16` and the same in qawq write).
 * Refused with QC_EUNSUPPORTED and the reason: other group sizes, channel or
 * tensor scales, FP8, quantized activations, a scale (or Q4_1 minimum) F16
 * cannot hold exactly (the message names the Linear and the block).
 *
 * K-quant checkpoints (qgptq --scheme gguf-*, quant/qc_gptqm.h: no
 * quantization_config, each quantized Linear's F32 weight beside its ggml
 * blocks <m>.weight_ggml_q4_k / _q5_k / _q6_k, format/qc_ggml.h
 * qc_ggml_blocks_suffix): the blocks are written as they are, each row
 * first checked to decode bit for bit to its F32 weight (QC_EFORMAT naming
 * the row otherwise); Linears without blocks stay dense. The recipe's type
 * is the first q_proj's. As llama-quantize's K recipes do
 * (llama_tensor_get_type), output.weight is Q6_K and token_embd the
 * recipe's type, or Q6_K when the embeddings are tied; both rounded by
 * qc_ggml_quantize_ref. general.file_type 14/15 (Q4_K_S/M: M when some
 * Linear is Q6_K), 16/17 for Q5_K, 18 for Q6_K. Hidden and intermediate
 * sizes must be multiples of 256.
 *
 * The file, as llama.cpp's convert_hf_to_gguf.py writes a Llama
 * (doc/formats.md 4):
 *   metadata  general.architecture "llama", general.name (the config's
 *             _name_or_path when present), llama.{vocab_size,
 *             context_length, embedding_length, block_count,
 *             feed_forward_length, attention.head_count,
 *             attention.head_count_kv, rope.dimension_count} u32,
 *             llama.rope.freq_base and attention.layer_norm_rms_epsilon
 *             f32, llama.attention.{key,value}_length u32 when config.json
 *             has head_dim, llama.rope.scaling.{type,factor} for linear
 *             scaling, general.file_type u32 (2 Q4_0, 3 Q4_1, 7 Q8_0; K above),
 *             general.quantization_version u32 2;
 *   tokenizer byte-level BPE (Llama-3 style) only: tokenizer.ggml.model
 *             "gpt2", .pre "llama-bpe" (recognized by Llama-3's split
 *             regex; others refused, since llama.cpp must know the
 *             pre-tokenizer by name), .tokens (vocab_size strings, "[PADi]"
 *             for ids no token has), .token_type i32 (1 normal, 3 control
 *             for special added tokens and ones spelled <|...|>, 4
 *             user-defined added, 5 unused), .merges ("a b"),
 *             .bos_token_id/.eos_token_id/.padding_token_id/
 *             .unknown_token_id u32 when tokenizer_config names them,
 *             .add_bos_token/.add_eos_token bool, tokenizer.chat_template;
 *   tensors   token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v,
 *             attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down},
 *             output_norm, output (absent when the embeddings are tied),
 *             rope_freqs (llama3 rope scaling: F32 [head_dim/2], the
 *             converter's factors computed in float); norms F32, other
 *             dense tensors in the model's dtype (BF16, F16 or F32: no
 *             rounding), quantized Linears in the chosen type; attn_q and
 *             attn_k rows permuted into llama.cpp's rope layout (within
 *             each head of hd rows, new row 2i + j is old row j*hd/2 + i),
 *             which moves whole rows and so whole blocks.
 * Refused: architectures other than Llama, attention or MLP biases,
 * SentencePiece tokenizers (no tokenizer.model reader here).
 *
 * Output: a file written atomically (nothing is left on failure), or "-"
 * for standard output. Memory: one tensor's rows at a time, plus the
 * tokenizer.
 */
#ifndef QC_GGUF_PACK_H
#define QC_GGUF_PACK_H

#include <stdint.h>

typedef struct qc_gguf_pack_opts {
	const char *input;         /* naive-quantized checkpoint: directory, tar, "-" */
	const char *output;        /* file or "-" */
	int force;                 /* replace an existing file */
	uint64_t stream_mem_limit; /* qc_ckpt_opts for stream inputs (0: default) */
	void (*progress)(void *ctx, int done, int total);   /* per layer; may be NULL */
	void *progress_ctx;
} qc_gguf_pack_opts;

typedef struct qc_gguf_pack_result {
	char type[8];              /* "Q4_0", "Q4_1", "Q8_0", or the K recipe's "Q4_K", ... */
	int64_t linears;           /* quantized Linears written */
	int64_t tensors;
	uint64_t bytes;            /* tensor data bytes, padding excluded */
} qc_gguf_pack_result;

/* Returns 0, QC_EUNSUPPORTED (see above), QC_EFORMAT (malformed input),
 * QC_EINVAL (output exists without force), QC_EIO, QC_ENOMEM. */
int qc_gguf_pack(const qc_gguf_pack_opts *o, qc_gguf_pack_result *res);

#endif
