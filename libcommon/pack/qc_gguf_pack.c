/* qc_gguf_pack.c - a naive-quantized Llama checkpoint as a GGUF file (see
 * qc_gguf_pack.h). Tensor names, metadata keys and their types follow
 * llama.cpp's gguf-py constants.py and convert_hf_to_gguf.py (LlamaModel),
 * since llama.cpp's loader checks the value types strictly. */
#include "qc_gguf_pack.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_gguf.h"
#include "qc_gguf_llama.h"
#include "qc_io.h"
#include "qc_model.h"
#include "qc_num.h"
#include "qc_tok.h"

/* Llama-3's split regex (tokenizer.json pre_tokenizer): llama.cpp names this
 * pre-tokenizer "llama-bpe" */
static const char llama3_regex[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5 };

typedef struct gp {
	const qc_gguf_pack_opts *o;
	qc_ckpt *ck;
	qc_config cfg;
	qc_ctq *ctq;
	qc_wsrc src;
	int qtype;             /* ggml type of the quantized Linears (K mode: of most) */
	int kmode;             /* K-quant blocks stored beside float weights */
	int kmixed;            /* K mode: some Linear is Q6_K while qtype is not */
	int dtype2;            /* ggml type of the other 2-D tensors */
	qc_gguf_w *w;
	int64_t linears, tensors;
	uint64_t bytes;
	/* tokenizer */
	json_t *tj, *tc;       /* tokenizer.json, tokenizer_config.json (or NULL) */
	char **tokens;
	size_t *toklen;
	int32_t *types;
	char **merges;
	size_t n_merges;
	qc_tok *tok;
} gp;

/* ---------------------------------------------------------------- tokenizer */

static int small_json(gp *p, const char *name, json_t **out, int required)
{
	const void *data;
	size_t len;
	*out = NULL;
	int rc = qc_ckpt_file(p->ck, name, &data, &len);
	if (rc == QC_ENOTFOUND && !required)
		return 0;
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_EUNSUPPORTED, "'%s' has no %s: a GGUF file carries the tokenizer",
		                 qc_ckpt_name(p->ck), name);
	if (rc)
		return rc;
	json_error_t e;
	*out = json_loadb(data, len, 0, &e);
	if (!*out)
		return qc_seterr(QC_EFORMAT, "'%s': %s line %d: %s", qc_ckpt_name(p->ck), name, e.line,
		                 e.text);
	return 0;
}

static int looks_special(const char *s)
{
	size_t n = strlen(s);
	return strcmp(s, "<pad>") == 0 || strcmp(s, "<mask>") == 0 ||
	       (n >= 4 && strncmp(s, "<|", 2) == 0 && strcmp(s + n - 2, "|>") == 0);
}

/* The id of a tokenizer_config entry (a string, or {"content": ...}), or -1 */
static int64_t config_token(gp *p, const char *key)
{
	json_t *v = p->tc ? json_object_get(p->tc, key) : NULL;
	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!json_is_string(v))
		return -1;
	return qc_tok_find(p->tok, json_string_value(v), json_string_length(v));
}

static int load_tokenizer(gp *p)
{
	QC_TRY(small_json(p, "tokenizer.json", &p->tj, 1));
	QC_TRY(small_json(p, "tokenizer_config.json", &p->tc, 0));
	const char *nm = qc_ckpt_name(p->ck);
	json_t *model = json_object_get(p->tj, "model");
	json_t *vocab = json_object_get(model, "vocab");
	json_t *merges = json_object_get(model, "merges");
	if (!json_is_object(model) || !json_is_string(json_object_get(model, "type")) ||
	    strcmp(json_string_value(json_object_get(model, "type")), "BPE") != 0 ||
	    !json_is_object(vocab) || !json_is_array(merges))
		return qc_seterr(QC_EUNSUPPORTED, "'%s': tokenizer.json is not a BPE model with a vocab "
		                 "and merges (the GGUF writer handles byte-level BPE)", nm);
	/* byte-level BPE with Llama-3's split regex is llama.cpp's "llama-bpe" */
	char *dump = json_dumps(json_object_get(p->tj, "pre_tokenizer"), JSON_COMPACT);
	int bytelevel = dump && strstr(dump, "\"ByteLevel\"") != NULL;
	json_t *pre = json_object_get(p->tj, "pre_tokenizer");
	json_t *pts = json_object_get(pre, "pretokenizers");
	int llama3 = 0;
	for (size_t i = 0; json_is_array(pts) && i < json_array_size(pts); i++) {
		json_t *rx = json_object_get(json_object_get(json_array_get(pts, i), "pattern"), "Regex");
		if (json_is_string(rx) && strcmp(json_string_value(rx), llama3_regex) == 0)
			llama3 = 1;
	}
	free(dump);
	if (!bytelevel)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': the tokenizer is not byte-level BPE "
		                 "(SentencePiece-style tokenizers need tokenizer.model, which the GGUF "
		                 "writer does not read)", nm);
	if (!llama3)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': the pre-tokenizer is not Llama-3's split "
		                 "regex; llama.cpp knows pre-tokenizers by name and this one has none "
		                 "here", nm);
	/* the same files through qc_tok: added tokens, BOS/EOS rules */
	const void *tjd, *tcd = NULL;
	size_t tjl, tcl = 0;
	QC_TRY(qc_ckpt_file(p->ck, "tokenizer.json", &tjd, &tjl));
	if (p->tc)
		QC_TRY(qc_ckpt_file(p->ck, "tokenizer_config.json", &tcd, &tcl));
	int rc = qc_tok_load_mem(&p->tok, tjd, tjl, tcd, tcl, "tokenizer.json");
	if (rc)
		return qc_errctx(rc, "reading the tokenizer of '%s'", nm);

	int64_t V = p->cfg.vocab_size;
	if (qc_tok_vocab_size(p->tok) > V)
		return qc_seterr(QC_EFORMAT, "'%s': the tokenizer has ids up to %lld, beyond "
		                 "vocab_size %lld", nm, (long long)qc_tok_vocab_size(p->tok) - 1,
		                 (long long)V);
	p->tokens = calloc((size_t)V, sizeof *p->tokens);
	p->toklen = calloc((size_t)V, sizeof *p->toklen);
	p->types = calloc((size_t)V, sizeof *p->types);
	if (!p->tokens || !p->toklen || !p->types)
		return qc_seterr(QC_ENOMEM, "out of memory");
	for (int64_t i = 0; i < V; i++) {
		size_t len;
		const char *s = qc_tok_piece(p->tok, i, &len);
		qc_tok_id_kind k = qc_tok_id_type(p->tok, i);
		char pad[32];
		if (!s || k == QC_TOK_ID_NONE) {
			snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
			s = pad;
			len = strlen(pad);
			p->types[i] = TT_UNUSED;
		} else if (k == QC_TOK_ID_NORMAL) {
			p->types[i] = TT_NORMAL;
		} else {
			p->types[i] = k == QC_TOK_ID_SPECIAL || looks_special(s) ? TT_CONTROL : TT_USER;
		}
		if (!(p->tokens[i] = malloc(len + 1)))
			return qc_seterr(QC_ENOMEM, "out of memory");
		memcpy(p->tokens[i], s, len);
		p->tokens[i][len] = 0;
		p->toklen[i] = len;
	}
	/* user-defined added tokens: the converter writes U+2581 as a space */
	for (int64_t i = 0; i < V; i++) {
		char *t = p->tokens[i];
		if (p->types[i] != TT_USER)
			continue;
		size_t o = 0;
		for (size_t j = 0; j < p->toklen[i]; j++) {
			if (j + 2 < p->toklen[i] && (unsigned char)t[j] == 0xE2 &&
			    (unsigned char)t[j + 1] == 0x96 && (unsigned char)t[j + 2] == 0x81) {
				t[o++] = ' ';
				j += 2;
			} else {
				t[o++] = t[j];
			}
		}
		t[o] = 0;
		p->toklen[i] = o;
	}
	p->n_merges = json_array_size(merges);
	p->merges = calloc(p->n_merges ? p->n_merges : 1, sizeof *p->merges);
	if (!p->merges)
		return qc_seterr(QC_ENOMEM, "out of memory");
	for (size_t i = 0; i < p->n_merges; i++) {
		json_t *m = json_array_get(merges, i);
		const char *a = NULL, *b = NULL;
		if (json_is_string(m)) {
			a = json_string_value(m);
		} else if (json_is_array(m) && json_array_size(m) == 2 &&
		           json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
			a = json_string_value(json_array_get(m, 0));
			b = json_string_value(json_array_get(m, 1));
		} else {
			return qc_seterr(QC_EFORMAT, "'%s': tokenizer.json merge %zu is neither \"a b\" nor "
			                 "[a, b]", nm, i);
		}
		size_t n = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
		if (!(p->merges[i] = malloc(n)))
			return qc_seterr(QC_ENOMEM, "out of memory");
		snprintf(p->merges[i], n, b ? "%s %s" : "%s", a, b ? b : "");
	}
	return 0;
}

static int write_tokenizer(gp *p)
{
	qc_gguf_w *w = p->w;
	int64_t V = p->cfg.vocab_size;
	QC_TRY(qc_gguf_w_str(w, "tokenizer.ggml.model", "gpt2"));
	QC_TRY(qc_gguf_w_str(w, "tokenizer.ggml.pre", "llama-bpe"));
	QC_TRY(qc_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)p->tokens,
	                         p->toklen, (size_t)V));
	QC_TRY(qc_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", p->types, (size_t)V));
	QC_TRY(qc_gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)p->merges, NULL,
	                         p->n_merges));
	int64_t bos = qc_tok_bos(p->tok), eos = qc_tok_eos(p->tok);
	if (bos < 0)
		bos = p->cfg.bos_token_id;
	if (eos < 0 && p->cfg.n_eos > 0)
		eos = p->cfg.eos_token_ids[0];
	if (bos >= 0)
		QC_TRY(qc_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos));
	if (eos >= 0)
		QC_TRY(qc_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos));
	int64_t unk = config_token(p, "unk_token"), pad = config_token(p, "pad_token");
	if (unk >= 0)
		QC_TRY(qc_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk));
	if (pad >= 0)
		QC_TRY(qc_gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad));
	QC_TRY(qc_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", qc_tok_adds_bos(p->tok)));
	QC_TRY(qc_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", qc_tok_adds_eos(p->tok)));
	json_t *ct = p->tc ? json_object_get(p->tc, "chat_template") : NULL;
	if (json_is_array(ct)) {
		/* named templates: the "default" one is the chat template */
		json_t *pick = NULL;
		for (size_t i = 0; i < json_array_size(ct); i++) {
			json_t *e = json_array_get(ct, i);
			const char *n = json_string_value(json_object_get(e, "name"));
			if (n && strcmp(n, "default") == 0)
				pick = json_object_get(e, "template");
		}
		ct = pick;
	}
	if (json_is_string(ct))
		QC_TRY(qc_gguf_w_str(w, "tokenizer.chat_template", json_string_value(ct)));
	return 0;
}

/* ---------------------------------------------------------------- tensors */

typedef enum { K_EMBD, K_NORM, K_LINEAR, K_ROPE } kind;

typedef struct item {
	char gname[64];        /* GGUF name */
	char hname[160];       /* HF tensor (or module for Linears) */
	kind k;
	int type;
	int64_t rows, cols;    /* [rows, cols] row-major; 1-D: rows = 1 */
	int permute_heads;     /* q/k: heads to permute within (0: none) */
	int quantized;
	int kblocks;           /* K mode: the stored blocks are written as they are */
	int layer;             /* for progress; -1 outside layers */
} item;

static int qtype_of(gp *p)
{
	const qc_qscheme *s = &p->ctq->scheme;
	const qc_qargs *a = &s->weights;
	const char *nm = qc_ckpt_name(p->ck);
	if (a->is_float)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': FP8 weights have no GGUF block format", nm);
	if (s->act != QC_ACT_NONE || s->kv_cache_fp8)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': quantized activations have no GGUF "
		                 "equivalent (llama.cpp quantizes activations itself); GGUF holds "
		                 "weight-only schemes", nm);
	if (a->strategy != QC_QS_GROUP || a->group_size != 32)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': GGUF's Q4_0, Q4_1 and Q8_0 hold one scale per "
		                 "32 inputs; this checkpoint has %s%s (quantize with --group-size 32 "
		                 "--scale-dtype f16)", nm,
		                 a->strategy == QC_QS_GROUP ? "groups of " : a->strategy == QC_QS_CHANNEL
		                 ? "one scale per channel" : "one scale per tensor",
		                 a->strategy == QC_QS_GROUP ? (a->group_size == 64 ? "64" : a->group_size
		                 == 128 ? "128" : "another size") : "");
	if (a->bits == 4)
		return a->symmetric ? QC_GGML_Q4_0 : QC_GGML_Q4_1;
	if (a->symmetric)
		return QC_GGML_Q8_0;
	return qc_seterr(QC_EUNSUPPORTED, "'%s': int8 with zero points has no GGUF block format "
	                 "(Q8_0 is symmetric: quantize with --sym)", nm);
}

/* K mode: the type of the blocks stored for Linear `module` among a
 * layer's tensor names (0: none, the Linear is dense) */
static int kblocks_of(const char *module, const char *const *names, size_t n)
{
	char wn[200];
	snprintf(wn, sizeof wn, "%s.weight", module);
	size_t wl = strlen(wn);
	for (size_t i = 0; i < n; i++) {
		int t = qc_ggml_blocks_type(names[i]);
		if (t && strncmp(names[i], wn, wl) == 0 &&
		    strcmp(names[i] + wl, qc_ggml_blocks_suffix(t)) == 0)
			return t;
	}
	return 0;
}

/* A checkpoint of qgptq --scheme gguf-*: the recipe's type is that of the
 * first quantized q_proj (q and k are never promoted by the *_K_M mix). */
static int kmode_of(gp *p)
{
	for (int l = 0; l < p->cfg.num_hidden_layers; l++) {
		const char *const *names;
		size_t n;
		QC_TRY(qc_ckpt_group_names(p->ck, l, &names, &n));
		char mod[200];
		qc_linear_module(mod, sizeof mod, l, QC_LIN_Q);
		int t = kblocks_of(mod, names, n);
		if (t) {
			p->kmode = 1;
			p->qtype = t;
			return 0;
		}
		for (size_t i = 0; i < n; i++)
			if (qc_ggml_blocks_type(names[i]))
				return qc_seterr(QC_EUNSUPPORTED, "'%s' has ggml blocks but no q_proj in "
				                 "them (layer %d): the recipe's type is unknown",
				                 qc_ckpt_name(p->ck), l);
	}
	return 0;
}

static int add_item(item **it, size_t *n, size_t *cap, const item *x)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 64;
		item *t = realloc(*it, c * sizeof *t);
		if (!t)
			return qc_seterr(QC_ENOMEM, "out of memory");
		*it = t;
		*cap = c;
	}
	(*it)[(*n)++] = *x;
	return 0;
}

static int plan(gp *p, item **out, size_t *nout)
{
	const qc_config *c = &p->cfg;
	item *it = NULL;
	size_t n = 0, cap = 0;
	item x;
#define ADD()                                        \
	do {                                             \
		int rc_ = add_item(&it, &n, &cap, &x);       \
		if (rc_) {                                   \
			free(it);                                \
			return rc_;                              \
		}                                            \
	} while (0)
	memset(&x, 0, sizeof x);
	/* K mode quantizes the embedding and output as llama-quantize's *_K
	 * recipes do (llama_tensor_get_type): output.weight Q6_K, or
	 * token_embd when it doubles as the output (tied); token_embd the
	 * recipe's type otherwise */
	int emb_type = !p->kmode ? p->dtype2 : c->tie_word_embeddings ? QC_GGML_Q6_K : p->qtype;
	x = (item){ .k = K_EMBD, .type = emb_type, .rows = c->vocab_size, .cols = c->hidden_size,
		        .layer = -1 };
	snprintf(x.gname, sizeof x.gname, "token_embd.weight");
	snprintf(x.hname, sizeof x.hname, "model.embed_tokens.weight");
	ADD();
	if (c->rope_type == QC_ROPE_LLAMA3) {
		x = (item){ .k = K_ROPE, .type = QC_GGML_F32, .rows = 1, .cols = c->head_dim / 2,
			        .layer = -1 };
		snprintf(x.gname, sizeof x.gname, "rope_freqs.weight");
		ADD();
	}
	static const char *gl[QC_LIN_COUNT] = { "attn_q", "attn_k", "attn_v", "attn_output",
		                                    "ffn_gate", "ffn_up", "ffn_down" };
	for (int l = 0; l < c->num_hidden_layers; l++) {
		const char *const *lnames = NULL;
		size_t nl = 0;
		if (p->kmode) {
			int rc_ = qc_ckpt_group_names(p->ck, l, &lnames, &nl);
			if (rc_) {
				free(it);
				return rc_;
			}
		}
		x = (item){ .k = K_NORM, .type = QC_GGML_F32, .rows = 1, .cols = c->hidden_size,
			        .layer = l };
		snprintf(x.gname, sizeof x.gname, "blk.%d.attn_norm.weight", l);
		snprintf(x.hname, sizeof x.hname, "model.layers.%d.input_layernorm.weight", l);
		ADD();
		for (int li = 0; li < QC_LIN_COUNT; li++) {
			int64_t sh[2];
			qc_linear_shape(c, (qc_linear)li, sh);
			x = (item){ .k = K_LINEAR, .rows = sh[0], .cols = sh[1], .layer = l };
			snprintf(x.gname, sizeof x.gname, "blk.%d.%s.weight", l, gl[li]);
			qc_linear_module(x.hname, sizeof x.hname, l, (qc_linear)li);
			int q = p->kmode ? kblocks_of(x.hname, lnames, nl) : qc_ctq_quantized(p->ctq, x.hname);
			if (q < 0) {
				free(it);
				return q;
			}
			x.quantized = q != 0;
			x.kblocks = p->kmode && q;
			x.type = p->kmode ? (q ? q : p->dtype2) : q ? p->qtype : p->dtype2;
			if (x.kblocks && q == QC_GGML_Q6_K && p->qtype != QC_GGML_Q6_K)
				p->kmixed = 1;
			x.permute_heads = li == QC_LIN_Q ? (int)c->num_attention_heads
			                  : li == QC_LIN_K ? (int)c->num_key_value_heads : 0;
			ADD();
			if (li == QC_LIN_O) {
				x = (item){ .k = K_NORM, .type = QC_GGML_F32, .rows = 1, .cols = c->hidden_size,
					        .layer = l };
				snprintf(x.gname, sizeof x.gname, "blk.%d.ffn_norm.weight", l);
				snprintf(x.hname, sizeof x.hname, "model.layers.%d.post_attention_layernorm.weight",
				         l);
				ADD();
			}
		}
	}
	x = (item){ .k = K_NORM, .type = QC_GGML_F32, .rows = 1, .cols = c->hidden_size, .layer = -1 };
	snprintf(x.gname, sizeof x.gname, "output_norm.weight");
	snprintf(x.hname, sizeof x.hname, "model.norm.weight");
	ADD();
	if (!c->tie_word_embeddings && p->kmode) {
		x = (item){ .k = K_LINEAR, .type = QC_GGML_Q6_K, .rows = c->vocab_size,
			        .cols = c->hidden_size, .layer = -1 };
		snprintf(x.gname, sizeof x.gname, "output.weight");
		snprintf(x.hname, sizeof x.hname, "lm_head");
		ADD();
	} else if (!c->tie_word_embeddings) {
		int q = qc_ctq_quantized(p->ctq, "lm_head");
		if (q < 0) {
			free(it);
			return q;
		}
		x = (item){ .k = K_LINEAR, .type = q ? p->qtype : p->dtype2, .rows = c->vocab_size,
			        .cols = c->hidden_size, .quantized = q, .layer = -1 };
		snprintf(x.gname, sizeof x.gname, "output.weight");
		snprintf(x.hname, sizeof x.hname, "lm_head");
		ADD();
	}
#undef ADD
	*out = it;
	*nout = n;
	return 0;
}

/* The HF row that GGUF row r of a permuted q/k matrix takes (heads of hd
 * rows; new 2i + j <- old j * hd/2 + i within a head). */
static int64_t src_row(const item *x, int64_t r)
{
	if (!x->permute_heads)
		return r;
	int64_t hd = x->rows / x->permute_heads, h = r / hd, k = r % hd;
	return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static int write_dense(gp *p, const item *x, const qc_tensor *t, float *frow, uint8_t *orow,
                       size_t rb)
{
	size_t es = (size_t)qc_dtype_size(t->dtype);
	for (int64_t r = 0; r < x->rows; r++) {
		int64_t s = src_row(x, r);
		const uint8_t *src = (const uint8_t *)t->data + (size_t)(s * x->cols) * es;
		QC_TRY(qc_to_f32(frow, src, t->dtype, (size_t)x->cols));
		if (qc_first_nonfinite(frow, QC_DT_F32, (size_t)x->cols) >= 0)
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' row %lld holds NaN or Inf",
			                 qc_ckpt_name(p->ck), t->name, (long long)s);
		QC_TRY(qc_ggml_quantize_ref(x->type, frow, x->cols, orow));
		QC_TRY(qc_gguf_w_data(p->w, orow, rb));
	}
	return 0;
}

static int write_quant(gp *p, const item *x, float *frow, uint8_t *orow, size_t rb)
{
	qc_ctq_linear L;
	int rc = qc_ctq_linear_get(&L, p->ctq, &p->src, x->hname, x->rows, x->cols);
	if (rc) {
		qc_ctq_linear_release(&L);
		return rc;
	}
	int64_t ng = x->cols / 32;
	float *sc = malloc((size_t)ng * sizeof *sc), *zp = NULL;
	if (!sc)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	if (!rc && L.zero_point && !(zp = malloc((size_t)ng * sizeof *zp)))
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	size_t ses = L.scale ? (size_t)qc_dtype_size(L.scale->dtype) : 0;
	for (int64_t r = 0; !rc && r < x->rows; r++) {
		int64_t s = src_row(x, r);
		const int8_t *codes = (const int8_t *)L.weight->data + s * x->cols;
		rc = qc_to_f32(sc, (const uint8_t *)L.scale->data + (size_t)(s * ng) * ses,
		               L.scale->dtype, (size_t)ng);
		for (int64_t g = 0; !rc && zp && g < ng; g++)
			zp[g] = ((const int8_t *)L.zero_point->data)[s * ng + g];
		if (!rc && (rc = qc_ggml_from_codes(x->type, codes, sc, zp, x->cols, orow)))
			rc = qc_errctx(rc, "'%s': %s row %lld", qc_ckpt_name(p->ck), x->hname, (long long)s);
		if (!rc)
			rc = qc_gguf_w_data(p->w, orow, rb);
	}
	(void)frow;
	free(sc);
	free(zp);
	qc_ctq_linear_release(&L);
	return rc;
}

/* K mode: a Linear's stored blocks, row by row in GGUF's order, each
 * checked to decode to its float weight exactly (so a file never holds
 * what the checkpoint's readers did not run). */
static int write_kblocks(gp *p, const item *x, size_t rb)
{
	char wn[200], bn[220];
	snprintf(wn, sizeof wn, "%s.weight", x->hname);
	snprintf(bn, sizeof bn, "%s%s", wn, qc_ggml_blocks_suffix(x->type));
	const qc_tensor *w = NULL, *b = NULL;
	int rc = qc_ckpt_get(p->ck, wn, &w);
	if (!rc)
		rc = qc_ckpt_get(p->ck, bn, &b);
	if (!rc && (w->dtype != QC_DT_F32 || w->ndim != 2 || w->shape[0] != x->rows ||
	            w->shape[1] != x->cols || b->dtype != QC_DT_U8 || b->ndim != 2 ||
	            b->shape[0] != x->rows || b->shape[1] != (int64_t)rb))
		rc = qc_seterr(QC_EFORMAT, "'%s': '%s' must be F32 [%lld, %lld] and '%s' U8 [%lld, %zu]",
		               qc_ckpt_name(p->ck), wn, (long long)x->rows, (long long)x->cols, bn,
		               (long long)x->rows, rb);
	for (int64_t r = 0; !rc && r < x->rows; r++) {
		int64_t s = src_row(x, r), bad;
		const uint8_t *blk = (const uint8_t *)b->data + (size_t)s * rb;
		rc = qc_ggml_blocks_match(x->type, blk, (const float *)w->data + s * x->cols, 1,
		                          x->cols, &bad);
		if (!rc && bad >= 0)
			rc = qc_seterr(QC_EFORMAT, "'%s': row %lld of '%s' does not decode to '%s'",
			               qc_ckpt_name(p->ck), (long long)s, bn, wn);
		if (!rc)
			rc = qc_gguf_w_data(p->w, blk, rb);
	}
	if (w)
		qc_ckpt_release(p->ck, wn);
	if (b)
		qc_ckpt_release(p->ck, bn);
	return rc;
}

static int write_item(gp *p, const item *x)
{
	size_t rb;
	QC_TRY(qc_ggml_row_bytes(x->type, x->cols, &rb));
	float *frow = malloc((size_t)x->cols * sizeof *frow);
	uint8_t *orow = malloc(rb);
	int rc = 0;
	if (!frow || !orow) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	} else if (x->k == K_ROPE) {
		const qc_config *c = &p->cfg;
		qc_gguf_rope_factors(c->rope_theta, c->head_dim, c->rope_factor, c->rope_low_freq_factor,
		                     c->rope_high_freq_factor, c->rope_original_max_position_embeddings,
		                     frow);
		rc = qc_gguf_w_data(p->w, frow, rb);
	} else if (x->kblocks) {
		rc = write_kblocks(p, x, rb);
		p->linears++;
	} else if (x->k == K_LINEAR && x->quantized) {
		rc = write_quant(p, x, frow, orow, rb);
		p->linears++;
	} else {
		char name[200];
		if (x->k == K_LINEAR)
			snprintf(name, sizeof name, "%s.weight", x->hname);
		else
			snprintf(name, sizeof name, "%s", x->hname);
		const qc_tensor *t = NULL;
		rc = qc_ckpt_get(p->ck, name, &t);
		if (!rc && (qc_numel(t->ndim, t->shape) != x->rows * x->cols ||
		            !qc_dtype_is_float(t->dtype)))
			rc = qc_seterr(QC_EFORMAT, "'%s': tensor '%s' is %s with %lld values, expected "
			               "float with %lld", qc_ckpt_name(p->ck), name, qc_dtype_name(t->dtype),
			               (long long)qc_numel(t->ndim, t->shape), (long long)(x->rows * x->cols));
		if (!rc)
			rc = write_dense(p, x, t, frow, orow, rb);
		if (t)
			qc_ckpt_release(p->ck, name);
	}
	p->bytes += rb * (uint64_t)x->rows;
	free(frow);
	free(orow);
	return rc;
}

/* ---------------------------------------------------------------- metadata */

static int write_meta(gp *p)
{
	qc_gguf_w *w = p->w;
	const qc_config *c = &p->cfg;
	QC_TRY(qc_gguf_w_str(w, "general.architecture", "llama"));
	json_t *nm = json_object_get(c->raw, "_name_or_path");
	if (json_is_string(nm) && json_string_length(nm) > 0) {
		const char *s = json_string_value(nm), *slash = strrchr(s, '/');
		QC_TRY(qc_gguf_w_str(w, "general.name", slash && slash[1] ? slash + 1 : s));
	}
	QC_TRY(qc_gguf_w_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
	QC_TRY(qc_gguf_w_u32(w, "llama.block_count", (uint32_t)c->num_hidden_layers));
	QC_TRY(qc_gguf_w_u32(w, "llama.context_length", (uint32_t)c->max_position_embeddings));
	QC_TRY(qc_gguf_w_u32(w, "llama.embedding_length", (uint32_t)c->hidden_size));
	QC_TRY(qc_gguf_w_u32(w, "llama.feed_forward_length", (uint32_t)c->intermediate_size));
	QC_TRY(qc_gguf_w_u32(w, "llama.attention.head_count", (uint32_t)c->num_attention_heads));
	QC_TRY(qc_gguf_w_u32(w, "llama.attention.head_count_kv", (uint32_t)c->num_key_value_heads));
	QC_TRY(qc_gguf_w_f32(w, "llama.rope.freq_base", (float)c->rope_theta));
	QC_TRY(qc_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_norm_eps));
	if (json_object_get(c->raw, "head_dim")) {
		QC_TRY(qc_gguf_w_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim));
		QC_TRY(qc_gguf_w_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim));
	}
	QC_TRY(qc_gguf_w_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim));
	if (c->rope_type == QC_ROPE_LINEAR) {
		QC_TRY(qc_gguf_w_str(w, "llama.rope.scaling.type", "linear"));
		QC_TRY(qc_gguf_w_f32(w, "llama.rope.scaling.factor", (float)c->rope_factor));
	}
	/* llama_ftype: 2 Q4_0, 3 Q4_1, 7 Q8_0, 14/15 Q4_K_S/M, 16/17 Q5_K_S/M,
	 * 18 Q6_K (the K mixes: "M" when some Linear was promoted to Q6_K) */
	uint32_t ft = p->qtype == QC_GGML_Q4_0 ? 2 : p->qtype == QC_GGML_Q4_1 ? 3
	              : p->qtype == QC_GGML_Q8_0 ? 7 : p->qtype == QC_GGML_Q4_K ? 14u + (uint32_t)p->kmixed
	              : p->qtype == QC_GGML_Q5_K ? 16u + (uint32_t)p->kmixed : 18;
	QC_TRY(qc_gguf_w_u32(w, "general.file_type", ft));
	QC_TRY(qc_gguf_w_u32(w, "general.quantization_version", 2));
	return write_tokenizer(p);
}

/* ---------------------------------------------------------------- the run */

static int check_input(gp *p)
{
	const qc_config *c = &p->cfg;
	const char *nm = qc_ckpt_name(p->ck);
	if (strcmp(c->model_type, "llama") != 0)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': model_type \"%s\": the GGUF writer knows "
		                 "llama", nm, c->model_type);
	if (c->attention_bias || c->mlp_bias)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': Linear biases are not written to GGUF here",
		                 nm);
	if (strcmp(c->hidden_act, "silu") != 0)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': hidden_act \"%s\" (llama.cpp's llama runs "
		                 "silu)", nm, c->hidden_act);
	if (c->head_dim % 2)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': odd head_dim %lld", nm, (long long)c->head_dim);
	p->dtype2 = c->torch_dtype == QC_DT_F16 ? QC_GGML_F16
	            : c->torch_dtype == QC_DT_F32 ? QC_GGML_F32 : QC_GGML_BF16;
	if (c->hidden_size % 32 || c->intermediate_size % 32 ||
	    (c->num_attention_heads * c->head_dim) % 32)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': Linear inputs (%lld, %lld, %lld) must be "
		                 "multiples of 32 for GGUF's blocks", nm, (long long)c->hidden_size,
		                 (long long)c->intermediate_size,
		                 (long long)(c->num_attention_heads * c->head_dim));
	return 0;
}

static int run(gp *p, qc_gguf_pack_result *res)
{
	const qc_gguf_pack_opts *o = p->o;
	qc_ckpt_opts co = { .stream_mem_limit = o->stream_mem_limit };
	QC_TRY(qc_ckpt_open(&p->ck, o->input, &co));
	qc_wsrc_ckpt(&p->src, p->ck);
	QC_TRY(qc_config_read(&p->cfg, p->ck));
	int rc;
	QC_TRY(check_input(p));
	if ((rc = qc_ctq_from_config(&p->ctq, p->cfg.raw)))
		return qc_errctx(rc, "reading '%s'", qc_ckpt_name(p->ck));
	if (!p->ctq && (rc = kmode_of(p)))
		return rc;
	if (!p->ctq && !p->kmode)
		return qc_seterr(QC_EUNSUPPORTED, "'%s' is not quantized: quantize it with qgptq or "
		                 "qawq first (--group-size 32 --scale-dtype f16, or qgptq --scheme "
		                 "gguf-q4_k_m)", qc_ckpt_name(p->ck));
	if (p->kmode && (p->cfg.hidden_size % QC_GGML_QK_K || p->cfg.intermediate_size % QC_GGML_QK_K))
		return qc_seterr(QC_EFORMAT, "'%s': hidden and intermediate sizes must be multiples of "
		                 "%d for K-quant blocks", qc_ckpt_name(p->ck), QC_GGML_QK_K);
	if (p->kmode)
		; /* the Linears' types come with their blocks */
	else if (p->ctq->format != QC_CTQ_NAIVE)
		return qc_seterr(QC_EUNSUPPORTED, "'%s' is already packed (format \"%s\"); qpack reads "
		                 "naive-quantized checkpoints", qc_ckpt_name(p->ck),
		                 p->ctq->scheme.format);
	if (!p->kmode && (p->qtype = qtype_of(p)) < 0)
		return p->qtype;
	QC_TRY(load_tokenizer(p));
	item *it = NULL;
	size_t n = 0;
	QC_TRY(plan(p, &it, &n));
	rc = qc_gguf_w_new(&p->w, 0);
	if (!rc)
		rc = write_meta(p);
	for (size_t i = 0; !rc && i < n; i++) {
		int64_t ne[2] = { it[i].cols, it[i].rows };
		rc = qc_gguf_w_tensor(p->w, it[i].gname, it[i].type, it[i].rows == 1 &&
		                      it[i].k != K_LINEAR && it[i].k != K_EMBD ? 1 : 2, ne);
	}
	if (rc) {
		free(it);
		return rc;
	}
	/* the output: refuse an existing file before anything is written */
	int to_stdout = strcmp(o->output, "-") == 0;
	struct stat st;
	if (!to_stdout && !o->force && stat(o->output, &st) == 0) {
		free(it);
		return qc_seterr(QC_EINVAL, "'%s' exists (--force replaces it)", o->output);
	}
	qc_atomic at = { .fd = -1 };
	qc_sink sink;
	if (to_stdout) {
		qc_sink_fd(&sink, STDOUT_FILENO, "<stdout>");
	} else if ((rc = qc_atomic_open(&at, o->output))) {
		free(it);
		return rc;
	} else {
		qc_sink_fd(&sink, at.fd, o->output);
	}
	rc = qc_gguf_w_begin(p->w, &sink);
	int total = (int)p->cfg.num_hidden_layers, last = -1;
	for (size_t i = 0; !rc && i < n; i++) {
		rc = write_item(p, &it[i]);
		p->tensors++;
		if (!rc && o->progress && it[i].layer >= 0 && it[i].layer != last &&
		    (i + 1 == n || it[i + 1].layer != it[i].layer)) {
			last = it[i].layer;
			o->progress(o->progress_ctx, last + 1, total);
		}
	}
	if (!rc)
		rc = qc_gguf_w_end(p->w);
	if (!to_stdout) {
		if (!rc)
			rc = qc_atomic_commit(&at);
		else
			qc_atomic_abort(&at);
	}
	free(it);
	if (!rc && res) {
		snprintf(res->type, sizeof res->type, "%s", qc_ggml_type_name(p->qtype));
		res->linears = p->linears;
		res->tensors = p->tensors;
		res->bytes = p->bytes;
	}
	return rc;
}

int qc_gguf_pack(const qc_gguf_pack_opts *o, qc_gguf_pack_result *res)
{
	if (res)
		memset(res, 0, sizeof *res);
	gp p;
	memset(&p, 0, sizeof p);
	p.o = o;
	int rc = run(&p, res);
	qc_gguf_w_free(p.w);
	for (int64_t i = 0; p.tokens && i < p.cfg.vocab_size; i++)
		free(p.tokens[i]);
	free(p.tokens);
	free(p.toklen);
	free(p.types);
	for (size_t i = 0; i < p.n_merges && p.merges; i++)
		free(p.merges[i]);
	free(p.merges);
	qc_tok_free(p.tok);
	json_decref(p.tj);
	json_decref(p.tc);
	qc_ctq_free(p.ctq);
	qc_config_free(&p.cfg);
	qc_ckpt_close(p.ck);
	return rc;
}
