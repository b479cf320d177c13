/*
 * qc_tok.h - the model's own tokenizer, read from tokenizer.json (the
 * HuggingFace `tokenizers` schema) and tokenizer_config.json, or from a
 * SentencePiece tokenizer.model when there is no tokenizer.json (Llama-2,
 * Vicuna v1.5).
 *
 * Two BPE families are implemented, following the schema rather than any
 * one file:
 *   - byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM): a pre-tokenizer of
 *     Split regexes (run with PCRE2, UTF + UCP), Digits and Punctuation splits
 *     and ByteLevel, merges by rank, optional `ignore_merges`;
 *   - SentencePiece-style BPE (Llama-2, Mistral, TinyLlama, Phi-3): the
 *     normalizer Prepend/Replace of U+2581 or a Metaspace pre-tokenizer,
 *     merges by rank, byte fallback to <0xNN> tokens, unk with fuse_unk.
 * Other models (WordPiece, Unigram, WordLevel) are QC_EUNSUPPORTED with a
 * message naming the type, as are pre-tokenizers, normalizers and post-
 * processors outside the sets below.
 *
 * Normalizers (each exact): Prepend, Replace (literal or regex), Strip,
 * NFC, NFD, NFKC, NFKD, Lowercase, StripAccents (qc_unorm.h), Sequence.
 * Refused by name: BertNormalizer, Precompiled, ByteLevel, Nmt and any
 * other.
 *
 * Pre-tokenizers, applied in the file's order as tokenizers does, each step
 * to every piece the steps before it made: Split, ByteLevel, Metaspace
 * (prepend_scheme always / first / never, split true / false), Digits,
 * Punctuation, Whitespace and WhitespaceSplit (with the Rust regex crate's
 * \w and \s), BertPreTokenizer (WhitespaceSplit then Punctuation),
 * CharDelimiterSplit, FixedLength (length >= 1), Sequence. Steps after
 * ByteLevel see its mapped characters (a space is 'Ġ'), as in Falcon's
 * Sequence of Punctuation,
 * ByteLevel, Digits and Split; Metaspace or a second ByteLevel after
 * ByteLevel are refused. Refused by name: UnicodeScripts and any other.
 *
 * tokenizer.model (qc_spm.h) is encoded as SentencePiece's BPE does: its
 * normalizer (dummy prefix, remove_extra_whitespaces, escape_whitespaces;
 * the identity rule only, a precompiled charsmap is refused), then the
 * adjacent pair whose concatenation is a piece of the highest score merges
 * first (leftmost among equal scores), user-defined pieces are never merged,
 * and what is left unknown becomes <0xNN> byte pieces (byte_fallback) or
 * one unk per run. Models of type Unigram, Word or Char, unused pieces and
 * treat_whitespace_as_suffix are refused by name. As transformers does,
 * control and unknown pieces written in the text (<s>, </s>, <unk>) are
 * special tokens, BOS is added (add_bos_token / add_eos_token of
 * tokenizer_config.json decide when present), and tokenizer_config's
 * legacy: false puts the dummy prefix before the first segment of a text
 * only (as transformers' LlamaTokenizer, which reads tokenizer.model, does;
 * its converted fast tokenizer omits it before a leading space),
 * add_prefix_space: false nowhere. Bytes that are not valid UTF-8
 * become U+FFFD as SentencePiece's normalizer makes them, so decode gives
 * U+FFFD back for them.
 *
 * Encoding follows the tokenizers library step by step: added tokens (the
 * `added_tokens` list) are found first, leftmost-longest, honouring
 * `normalized`, `lstrip`, `rstrip` and `single_word`; each remaining segment
 * is normalized, pre-tokenized into words, and every word is merged by rank
 * (a heap of candidate merges over a linked list of symbols, as tokenizers'
 * word.rs does, plus a cache of word encodings). Ids are int32 throughout.
 *
 * Input text is bytes: invalid UTF-8 never fails. Bytes that do not form
 * valid UTF-8 match no regex class, so they become words of their own; in
 * byte-level BPE they encode as their byte tokens, in SentencePiece-style BPE
 * through byte fallback. decode() gives the bytes back (tokenizer.json; see
 * above for tokenizer.model). The Unicode normalizers pass them through.
 *
 * Ownership: a qc_tok owns everything it returns pointers to; they live until
 * qc_tok_free. Threads: qc_tok_encode mutates a per-handle cache and regex
 * scratch, so one handle must be used by one thread at a time (load one
 * handle per thread to encode in parallel). Every other function is const.
 */
#ifndef QC_TOK_H
#define QC_TOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct qc_tok qc_tok;

/* Files larger than this are rejected as malformed (Llama-3's is 6 to 9 MB). */
#define QC_TOK_MAX_JSON (512u << 20)

/* ---- loading ---- */

/* Load DIR/tokenizer.json, or DIR/tokenizer.model when there is no
 * tokenizer.json, and, when present, DIR/tokenizer_config.json. QC_EIO when
 * neither can be read, QC_EFORMAT when the file is not the schema (or not a
 * well-formed SentencePiece model), QC_EUNSUPPORTED for a model type or
 * component we do not handle. */
int qc_tok_load(qc_tok **out, const char *dir);

/* The same from memory. config may be NULL (len 0). name is used in
 * messages (copied). The buffers are not kept. */
int qc_tok_load_mem(qc_tok **out, const char *json, size_t len, const char *config,
                    size_t config_len, const char *name);

/* The same from a tokenizer.model held in memory (qc_spm.h). */
int qc_tok_load_spm_mem(qc_tok **out, const void *model, size_t len, const char *config,
                        size_t config_len, const char *name);

void qc_tok_free(qc_tok *t);                     /* NULL is a no-op */

/* The path (qc_tok_load) or name (the _mem loaders) the tokenizer was read
 * from: DIR/tokenizer.json or DIR/tokenizer.model, for hashing it. */
const char *qc_tok_file(const qc_tok *t);

/* ---- vocabulary ---- */

typedef enum {
	QC_TOK_BYTE_LEVEL = 1,     /* GPT-2 style byte-level BPE            */
	QC_TOK_SENTENCEPIECE = 2,  /* SentencePiece-style BPE (no ByteLevel) */
} qc_tok_kind;

qc_tok_kind qc_tok_type(const qc_tok *t);
/* 1 + the largest id of the model vocabulary and added tokens. */
int64_t qc_tok_vocab_size(const qc_tok *t);

typedef enum {
	QC_TOK_ID_NONE = 0,     /* out of range, or a hole in the id space  */
	QC_TOK_ID_NORMAL,       /* a token of the model vocabulary          */
	QC_TOK_ID_ADDED,        /* an added token with special: false       */
	QC_TOK_ID_SPECIAL,      /* an added token with special: true        */
} qc_tok_id_kind;

qc_tok_id_kind qc_tok_id_type(const qc_tok *t, int64_t id);

/* The token's string as tokenizer.json spells it ("Ġthe", "▁the", "<0x0A>",
 * "<s>"), NUL-terminated, length in *len (may be NULL); NULL for no token. */
const char *qc_tok_piece(const qc_tok *t, int64_t id, size_t *len);
/* Id of a token string (model vocabulary or added token), or -1. */
int32_t qc_tok_find(const qc_tok *t, const char *piece, size_t len);

/* BOS and EOS ids (-1 when unknown). BOS/EOS come from tokenizer_config's
 * bos_token/eos_token, else BOS from the post-processor's template. */
int32_t qc_tok_bos(const qc_tok *t);
int32_t qc_tok_eos(const qc_tok *t);

/* Whether encoding with QC_TOK_ADD_SPECIAL puts BOS first / EOS last. The
 * tokenizer_config keys add_bos_token and add_eos_token decide when present
 * (as transformers' Llama tokenizers do); otherwise the post-processor's
 * template (TemplateProcessing "single", Roberta/Bert processing) does. */
int qc_tok_adds_bos(const qc_tok *t);
int qc_tok_adds_eos(const qc_tok *t);

/* ---- encoding and decoding ---- */

/* A growing array of ids; zero-initialize, release with qc_ids_release. */
typedef struct qc_ids {
	int32_t *v;
	size_t n, cap;
} qc_ids;

int qc_ids_push(qc_ids *ids, int32_t id);        /* 0 or QC_ENOMEM */
void qc_ids_release(qc_ids *ids);                /* frees v, zeroes the struct */

enum {
	QC_TOK_ADD_SPECIAL = 1,   /* encode: apply the post-processing (BOS/EOS) */
	QC_TOK_SKIP_SPECIAL = 2,  /* decode: leave special tokens out            */
};

/* Append the ids of text[0..len) to out. Added and special tokens written in
 * the text are always recognized (as transformers does by default). flags:
 * QC_TOK_ADD_SPECIAL or 0. On failure (only QC_ENOMEM) out keeps what it had
 * before the call. Not thread-safe on one handle (see above). */
int qc_tok_encode(qc_tok *t, const char *text, size_t len, unsigned flags, qc_ids *out);

/* Text of ids: the decoder of tokenizer.json (ByteLevel inverse mapping,
 * Metaspace, Replace U+2581 -> ' ', ByteFallback, Fuse, Strip). Bytes that
 * do not form valid UTF-8 are given back as they are (tokenizers would print
 * U+FFFD), so decode(encode(x)) == x for any x where the pipeline is
 * lossless. *text is malloc'd and NUL-terminated. QC_EINVAL for an id that
 * names no token; QC_EUNSUPPORTED for a decoder type we do not handle. */
int qc_tok_decode(const qc_tok *t, const int32_t *ids, size_t n, unsigned flags,
                  char **text, size_t *len);

/* Switch the handle to the plain reference path (on != 0) or back: no word
 * cache, SentencePiece words merged whole instead of cut before each U+2581,
 * the textbook O(n^2) lowest-rank-pair merge loop instead of the heap, and
 * the Unicode normalizers without their ASCII shortcut (qc_unorm_ref).
 * The ids must be identical either way; tests and tests/bench compare. */
void qc_tok_set_reference(qc_tok *t, int on);

/* ---- building a small tokenizer (for synthetic models) ---- */

/* What qc_tok_build_bytelevel returns; release with qc_tok_built_release. */
typedef struct qc_tok_built {
	char *tokenizer_json;      /* tokenizer.json text, NUL-terminated       */
	size_t tokenizer_len;
	char *config_json;         /* tokenizer_config.json text                */
	size_t config_len;
	int32_t bos_id, eos_id;    /* "<|begin_of_text|>", "<|end_of_text|>"    */
	int64_t n_merges;          /* merges learned                            */
	int64_t n_reserved;        /* "<|reserved_special_token_K|>" fillers    */
} qc_tok_built;

/* Train a byte-level BPE tokenizer of exactly vocab_size ids (>= 259) on
 * text, in the Llama-3 layout:
 *   ids 0..255       the 256 bytes (id b is byte b, in ByteLevel spelling);
 *   then one token per merge, learned greedily on words cut by the Llama-3
 *   split regex: the most frequent adjacent pair first, ties broken by the
 *   smaller left id, then the smaller right id; learning stops when no pair
 *   occurs twice or the vocabulary is full;
 *   then "<|begin_of_text|>" (BOS) and "<|end_of_text|>" (EOS), specials;
 *   then "<|reserved_special_token_K|>" specials, K = 0, 1, ... up to
 *   vocab_size - 1.
 * The post-processor adds BOS; tokenizer_config says add_bos_token true,
 * add_eos_token false. The output is deterministic for the same arguments
 * and loads with qc_tok_load_mem (and is meant to load with the tokenizers
 * library: the same schema as Llama-3's file). Each reserved special costs
 * about 200 bytes of JSON: V = 128256 on a short text gives a 26 MB
 * tokenizer.json, built in about 0.5 s.
 * QC_EINVAL for vocab_size < 259 or > 2^31 - 1; text may be empty. */
int qc_tok_build_bytelevel(int64_t vocab_size, const char *text, size_t len, qc_tok_built *out);
void qc_tok_built_release(qc_tok_built *b);      /* frees and zeroes */

#endif
