/* qc_gguf_llama.c - a Llama GGUF file read back in HF terms (see
 * qc_gguf_llama.h). */
#include "qc_gguf_llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_gguf.h"
#include "qc_io.h"
#include "qc_num.h"

/* ---------------------------------------------------------------- rope */

void qc_gguf_rope_factors(double theta, int64_t head_dim, double factor, double low,
                          double high, int64_t orig_ctx, float *out)
{
	/* float32 throughout, as the converter's torch tensors are */
	const float pi2 = (float)(2 * 3.14159265358979323846);
	float lw = (float)orig_ctx / (float)low, hw = (float)orig_ctx / (float)high;
	for (int64_t i = 0; i < head_dim / 2; i++) {
		float freq = 1.0f / powf((float)theta, (float)(2 * i) / (float)head_dim);
		float wavelen = pi2 / freq;
		if (wavelen < hw) {
			out[i] = 1;
		} else if (wavelen > lw) {
			out[i] = (float)factor;
		} else {
			float smooth = ((float)orig_ctx / wavelen - (float)low) / ((float)high - (float)low);
			out[i] = 1 / ((1 - smooth) / (float)factor + smooth);
		}
	}
}


/* ---------------------------------------------------------------- names */

typedef struct entry {
	char hf[160];
	const qc_gguf_tensor *t;
	int64_t rows, cols;     /* HF shape; 1-D: rows 0 */
	int permute_heads;      /* attn_q / attn_k: heads */
	qc_tensor view;         /* what get returns */
	float *buf;             /* dequantized data, or NULL */
	int refs;
} entry;

struct qc_gguf_llama {
	qc_gguf *g;
	qc_config cfg;
	entry *e;
	size_t n;
	const char **names;
	qc_wsrc src;
	const char *wtype;
};

static const struct {
	const char *gguf, *hf;
	int lin;               /* index into qc_linear, or -1 */
} per_layer[] = {
	{ "attn_norm", "input_layernorm", -1 },  { "ffn_norm", "post_attention_layernorm", -1 },
	{ "attn_q", "self_attn.q_proj", QC_LIN_Q }, { "attn_k", "self_attn.k_proj", QC_LIN_K },
	{ "attn_v", "self_attn.v_proj", QC_LIN_V }, { "attn_output", "self_attn.o_proj", QC_LIN_O },
	{ "ffn_gate", "mlp.gate_proj", QC_LIN_GATE }, { "ffn_up", "mlp.up_proj", QC_LIN_UP },
	{ "ffn_down", "mlp.down_proj", QC_LIN_DOWN },
};

int qc_gguf_is_file(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	char m[4];
	int ok = fread(m, 1, 4, f) == 4 && memcmp(m, "GGUF", 4) == 0;
	fclose(f);
	return ok;
}

/* ---------------------------------------------------------------- config */

static int u32key(const qc_gguf *g, const char *k, int64_t *v)
{
	uint32_t u;
	QC_TRY(qc_gguf_get_u32(g, k, &u));
	*v = u;
	return 0;
}

static int recover_llama3(qc_gguf_llama *G, const qc_gguf_tensor *rf, qc_config *c)
{
	int64_t n = c->head_dim / 2;
	if (rf->type != QC_GGML_F32 || rf->ndim != 1 || rf->ne[0] != n)
		return qc_seterr(QC_EFORMAT, "rope_freqs.weight is not F32 [%lld]", (long long)n);
	const float *f = rf->data;
	float F = f[n - 1];
	float *try = malloc((size_t)n * sizeof *try);
	if (!try)
		return qc_seterr(QC_ENOMEM, "out of memory");
	/* candidates: what a blended factor implies with low 1, high 4, then
	 * the powers of two (Llama 3.1's 8192 among them) */
	int64_t cand[40];
	int nc = 0;
	for (int64_t i = 0; i < n && nc < 4; i++)
		if (f[i] > 1 && f[i] < F) {
			double freq = 1.0 / pow(c->rope_theta, 2.0 * (double)i / (double)c->head_dim);
			double wl = 2 * M_PI / freq, s = (1 / f[i] - 1 / F) / (1 - 1 / F);
			cand[nc++] = llround(wl * (3 * s + 1));
		}
	for (int b = 4; b <= 24 && nc < 40; b++)
		cand[nc++] = (int64_t)1 << b;
	int rc = QC_EUNSUPPORTED;
	for (int k = 0; k < nc && rc; k++) {
		qc_gguf_rope_factors(c->rope_theta, c->head_dim, F, 1, 4, cand[k], try);
		if (memcmp(try, f, (size_t)n * sizeof *f) == 0) {
			c->rope_type = QC_ROPE_LLAMA3;
			c->rope_factor = F;
			c->rope_low_freq_factor = 1;
			c->rope_high_freq_factor = 4;
			c->rope_original_max_position_embeddings = cand[k];
			rc = 0;
		}
	}
	free(try);
	(void)G;
	if (rc)
		return qc_seterr(QC_EUNSUPPORTED, "rope_freqs.weight holds factors that no Llama-3 "
		                 "rope scaling with low 1 and high 4 reproduces");
	return 0;
}

static int build_config(qc_gguf_llama *G, const char *path)
{
	const qc_gguf *g = G->g;
	const char *s;
	size_t sl;
	QC_TRY(qc_gguf_get_str(g, "general.architecture", &s, &sl));
	if (sl != 5 || memcmp(s, "llama", 5) != 0)
		return qc_seterr(QC_EUNSUPPORTED, "'%s': architecture \"%.*s\" (llama is read)", path,
		                 (int)(sl < 40 ? sl : 40), s);
	qc_config c;
	memset(&c, 0, sizeof c);
	int64_t hd = 0;
	float f;
	QC_TRY(u32key(g, "llama.embedding_length", &c.hidden_size));
	QC_TRY(u32key(g, "llama.feed_forward_length", &c.intermediate_size));
	QC_TRY(u32key(g, "llama.block_count", &c.num_hidden_layers));
	QC_TRY(u32key(g, "llama.attention.head_count", &c.num_attention_heads));
	QC_TRY(u32key(g, "llama.attention.head_count_kv", &c.num_key_value_heads));
	QC_TRY(u32key(g, "llama.context_length", &c.max_position_embeddings));
	QC_TRY(u32key(g, "llama.rope.dimension_count", &hd));
	c.head_dim = hd;
	QC_TRY(qc_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f));
	c.rms_norm_eps = f;
	int rc = qc_gguf_get_f32(g, "llama.rope.freq_base", &f);
	if (rc && rc != QC_ENOTFOUND)
		return rc;
	c.rope_theta = rc ? 10000.0 : f;
	const qc_gguf_tensor *emb = qc_gguf_tensor_find(g, "token_embd.weight");
	if (!emb || emb->ndim != 2)
		return qc_seterr(QC_EFORMAT, "'%s' has no 2-D token_embd.weight", path);
	c.vocab_size = emb->ne[1];
	c.torch_dtype = emb->type == QC_GGML_F16 ? QC_DT_F16 : emb->type == QC_GGML_F32 ? QC_DT_F32
	                                                                              : QC_DT_BF16;
	c.tie_word_embeddings = qc_gguf_tensor_find(g, "output.weight") == NULL;
	c.bos_token_id = -1;
	const qc_gguf_tensor *rf = qc_gguf_tensor_find(g, "rope_freqs.weight");
	if (rf)
		QC_TRY(recover_llama3(G, rf, &c));
	if (qc_gguf_get_str(g, "llama.rope.scaling.type", &s, &sl) == 0) {
		if (sl != 6 || memcmp(s, "linear", 6) != 0)
			return qc_seterr(QC_EUNSUPPORTED, "'%s': rope scaling \"%.*s\" is not read here",
			                 path, (int)(sl < 40 ? sl : 40), s);
		QC_TRY(qc_gguf_get_f32(g, "llama.rope.scaling.factor", &f));
		c.rope_type = QC_ROPE_LINEAR;
		c.rope_factor = f;
	}
	rc = qc_config_build(&c);
	if (rc)
		return qc_errctx(rc, "'%s': the hyperparameters", path);
	G->cfg = c;
	return 0;
}

/* ---------------------------------------------------------------- tensors */

static int add_entry(qc_gguf_llama *G, const qc_gguf_tensor *t, const char *hf, int64_t rows,
                     int64_t cols, int heads, const char *path)
{
	entry *e = &G->e[G->n++];
	memset(e, 0, sizeof *e);
	snprintf(e->hf, sizeof e->hf, "%s", hf);
	e->t = t;
	e->rows = rows;
	e->cols = cols;
	e->permute_heads = heads;
	int64_t want0 = cols, want1 = rows ? rows : 1;
	if (t->ne[0] != want0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
		return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' is [%lld, %lld], expected [%lld, %lld] "
		                 "(ggml order)", path, t->name, (long long)t->ne[0], (long long)t->ne[1],
		                 (long long)want0, (long long)want1);
	return 0;
}

static int map_tensors(qc_gguf_llama *G, const char *path)
{
	const qc_config *c = &G->cfg;
	size_t nt = qc_gguf_n_tensors(G->g);
	G->e = calloc(nt + 1, sizeof *G->e);
	G->names = calloc(nt + 1, sizeof *G->names);
	if (!G->e || !G->names)
		return qc_seterr(QC_ENOMEM, "out of memory");
	for (size_t i = 0; i < nt; i++) {
		const qc_gguf_tensor *t = qc_gguf_tensor_at(G->g, i);
		const char *nm = t->name;
		char hf[160];
		int l, off = 0;
		if (strcmp(nm, "rope_freqs.weight") == 0)
			continue;
		if (strcmp(nm, "token_embd.weight") == 0) {
			QC_TRY(add_entry(G, t, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, 0,
			                 path));
		} else if (strcmp(nm, "output_norm.weight") == 0) {
			QC_TRY(add_entry(G, t, "model.norm.weight", 0, c->hidden_size, 0, path));
		} else if (strcmp(nm, "output.weight") == 0) {
			QC_TRY(add_entry(G, t, "lm_head.weight", c->vocab_size, c->hidden_size, 0, path));
		} else if (sscanf(nm, "blk.%d.%n", &l, &off) == 1 && off > 0 && l >= 0 &&
		           l < c->num_hidden_layers) {
			const char *rest = nm + off;
			size_t k, np = sizeof per_layer / sizeof per_layer[0];
			for (k = 0; k < np; k++) {
				size_t gl = strlen(per_layer[k].gguf);
				if (strncmp(rest, per_layer[k].gguf, gl) == 0 && strcmp(rest + gl, ".weight") == 0)
					break;
			}
			if (k == np) {
				entry *e = &G->e[G->n++];
				memset(e, 0, sizeof *e);
				snprintf(e->hf, sizeof e->hf, "%s", nm);
				e->t = t;
				continue;
			}
			snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, per_layer[k].hf);
			if (per_layer[k].lin < 0) {
				QC_TRY(add_entry(G, t, hf, 0, c->hidden_size, 0, path));
			} else {
				int64_t sh[2];
				qc_linear_shape(c, (qc_linear)per_layer[k].lin, sh);
				int heads = per_layer[k].lin == QC_LIN_Q ? (int)c->num_attention_heads
				            : per_layer[k].lin == QC_LIN_K ? (int)c->num_key_value_heads : 0;
				QC_TRY(add_entry(G, t, hf, sh[0], sh[1], heads, path));
				if (!G->wtype && t->type != QC_GGML_F32 && t->type != QC_GGML_F16 &&
				    t->type != QC_GGML_BF16)
					G->wtype = qc_ggml_type_name(t->type);
			}
		} else {
			/* unknown: kept under its own name for the caller to report */
			entry *e = &G->e[G->n++];
			memset(e, 0, sizeof *e);
			snprintf(e->hf, sizeof e->hf, "%s", nm);
			e->t = t;
		}
	}
	for (size_t i = 0; i < G->n; i++)
		G->names[i] = G->e[i].hf;
	if (!G->wtype)
		G->wtype = qc_ggml_type_name(qc_gguf_tensor_find(G->g, "token_embd.weight")->type);
	return 0;
}

static entry *find(qc_gguf_llama *G, const char *name)
{
	for (size_t i = 0; i < G->n; i++)
		if (strcmp(G->e[i].hf, name) == 0)
			return &G->e[i];
	return NULL;
}

static int src_get(void *ctx, const char *name, const qc_tensor **out)
{
	qc_gguf_llama *G = ctx;
	entry *e = find(G, name);
	if (!e)
		return qc_seterr(QC_ENOTFOUND, "no tensor '%s' in the GGUF file", name);
	if (e->refs++ > 0) {
		*out = &e->view;
		return 0;
	}
	const qc_gguf_tensor *t = e->t;
	qc_tensor *v = &e->view;
	memset(v, 0, sizeof *v);
	v->name = e->hf;
	v->ndim = e->rows ? 2 : 1;
	v->shape[0] = e->rows ? e->rows : e->cols;
	v->shape[1] = e->cols;
	if (!e->rows && e->cols == 0) {
		/* an unknown tensor: its ggml shape, reversed */
		v->ndim = t->ndim;
		for (int d = 0; d < t->ndim; d++)
			v->shape[d] = t->ne[t->ndim - 1 - d];
	}
	int plain = t->type == QC_GGML_F32 || t->type == QC_GGML_F16 || t->type == QC_GGML_BF16;
	if (plain && !e->permute_heads) {
		v->dtype = t->type == QC_GGML_F32 ? QC_DT_F32 : t->type == QC_GGML_F16 ? QC_DT_F16
		                                                                       : QC_DT_BF16;
		v->data = t->data;
		v->nbytes = (size_t)t->bytes;
		*out = v;
		return 0;
	}
	int64_t rows = t->ne[1] * t->ne[2] * t->ne[3], cols = t->ne[0];
	size_t rb;
	int rc = qc_ggml_row_bytes(t->type, cols, &rb);
	if (rc) {
		e->refs = 0;
		return rc;
	}
	e->buf = malloc((size_t)(rows * cols) * sizeof *e->buf);
	if (!e->buf) {
		e->refs = 0;
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	for (int64_t r = 0; r < rows; r++) {
		/* GGUF row r is HF row src (qc_gguf_pack.h's permutation) */
		int64_t dst = r;
		if (e->permute_heads) {
			int64_t hd = rows / e->permute_heads, h = r / hd, k = r % hd;
			dst = h * hd + (k % 2) * (hd / 2) + k / 2;
		}
		rc = qc_ggml_dequantize(t->type, (const uint8_t *)t->data + (size_t)r * rb, cols,
		                        e->buf + dst * cols);
		if (rc) {
			free(e->buf);
			e->buf = NULL;
			e->refs = 0;
			return rc;
		}
	}
	v->dtype = QC_DT_F32;
	v->data = e->buf;
	v->nbytes = (size_t)(rows * cols) * sizeof(float);
	*out = v;
	return 0;
}

static void src_release(void *ctx, const char *name)
{
	qc_gguf_llama *G = ctx;
	entry *e = find(G, name);
	if (!e || e->refs == 0)
		return;
	if (--e->refs == 0) {
		free(e->buf);
		e->buf = NULL;
	}
}

/* ---------------------------------------------------------------- handle */

int qc_gguf_llama_open(qc_gguf_llama **out, const char *path)
{
	*out = NULL;
	qc_gguf_llama *G = calloc(1, sizeof *G);
	if (!G)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = qc_gguf_open(&G->g, path);
	if (!rc && (rc = build_config(G, path)))
		rc = qc_errctx(rc, "reading '%s'", path);
	if (!rc)
		rc = map_tensors(G, path);
	if (rc) {
		qc_gguf_llama_close(G);
		return rc;
	}
	G->src = (qc_wsrc){ G, src_get, src_release };
	*out = G;
	return 0;
}

void qc_gguf_llama_close(qc_gguf_llama *G)
{
	if (!G)
		return;
	for (size_t i = 0; i < G->n; i++)
		free(G->e[i].buf);
	free(G->e);
	free(G->names);
	qc_config_free(&G->cfg);
	qc_gguf_close(G->g);
	free(G);
}

const qc_config *qc_gguf_llama_config(const qc_gguf_llama *G) { return &G->cfg; }
qc_wsrc const *qc_gguf_llama_wsrc(qc_gguf_llama *G) { return &G->src; }
const char *qc_gguf_llama_weight_type(const qc_gguf_llama *G) { return G->wtype; }

void qc_gguf_llama_names(const qc_gguf_llama *G, const char *const **names, size_t *n)
{
	*names = G->names;
	*n = G->n;
}
